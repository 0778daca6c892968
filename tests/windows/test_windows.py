"""Tests of stage windows: finding recordings, window offsets, skips, the cache, the split."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from overnight.config import WindowsConfig
from overnight.hbn.bids import eeg_path, events_path, write_events, write_recording
from overnight.hbn.channels import CH_NAMES, index_of
from overnight.windows.build import build_window_cache
from overnight.windows.cache import cache_identity, cache_summary, load_windows, open_cache
from overnight.windows.recordings import UnusableRecording, check_signal, find_recordings
from overnight.windows.split import make_split, read_split, write_split
from tests.helpers import event_row

CFG = WindowsConfig()
IMPULSE_V = 1e-4
NOISE_V = 1e-6  # a quiet background: enough signal for the checks, far below the impulses
# Channel of the impulse planted in trial k of every recording (net and 10-20 names).
IMPULSE_CHANNELS = ("E55", "C3", "Cz")
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------- recordings

def test_find_recordings_sorts_and_prefers_set(tmp_path: Path) -> None:
    for subject, run, fmt in [("B", 10, "bdf"), ("B", 2, "set"), ("A", 1, "bdf"),
                              ("A", 1, "set"), ("A", 3, "bdf")]:
        path = eeg_path(tmp_path, subject, run, fmt)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    (tmp_path / "sub-A" / "eeg" / "sub-A_task-restingState_eeg.set").touch()

    recs = find_recordings(tmp_path)

    assert [(r.subject, r.run, r.fmt) for r in recs] == [
        ("A", 1, "set"), ("A", 3, "bdf"), ("B", 2, "set"), ("B", 10, "bdf")]
    assert recs[0].events_path == events_path(eeg_path(tmp_path, "A", 1, "set"))


def test_find_recordings_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        find_recordings(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no sub-"):
        find_recordings(tmp_path)
    with pytest.raises(TypeError, match="bids_root=3"):
        find_recordings(3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the cache

# (subject, run, fmt, input rate Hz, stimulus onsets s, RTs s, duration s, channel order)
GOOD = [
    ("S01", 1, "set", 100.0, (1.0, 4.0, 7.0), (1.2, 0.3, 1.5), 9.0, "canonical"),  # 3rd: past end
    ("S01", 2, "bdf", 500.0, (1.0, 4.0), (1.7, 2.1), 7.0, "canonical"),
    ("S02", 1, "bdf", 100.0, (1.5, 4.5), (0.9, 1.4), 7.5, "reversed"),
    ("S02", 2, "set", 500.0, (1.23, 4.0), (1.1, 1.3), 7.0, "canonical"),
    ("S04", 1, "bdf", 100.0, (1.0, 4.0), (1.6, 1.8), 6.0, "with Status"),  # 2nd: past end
]


def _events_rows(stims_s: tuple[float, ...], rts_s: tuple[float, ...],
                 duration_s: float) -> list[dict[str, str]]:
    rows = [event_row(0.2, "contrastChangeB1_start")]
    for k, (stim_s, rt_s) in enumerate(zip(stims_s, rts_s, strict=True)):
        rows += [event_row(stim_s - 0.8, "contrastTrial_start"),
                 event_row(stim_s, "left_target" if k % 2 else "right_target"),
                 event_row(stim_s + rt_s, "left_buttonPress", "smiley_face" if k else "sad_face")]
    return [*rows, event_row(duration_s - 0.1, "end_experiment")]


def _write_good(root: Path, subject: str, run: int, fmt: str, sfreq_hz: float,
                stims_s: tuple[float, ...], rts_s: tuple[float, ...], duration_s: float,
                order: str) -> None:
    rng = np.random.default_rng([ord(c) for c in subject] + [run])
    data_v = rng.normal(0.0, NOISE_V, (len(CH_NAMES), round(duration_s * sfreq_hz)))
    data_v[index_of("Cz")] = 0.0  # the flat reference, as in HBN
    for k, stim_s in enumerate(stims_s):
        data_v[index_of(IMPULSE_CHANNELS[k]), round((stim_s + 1.0) * sfreq_hz)] = IMPULSE_V
    names = CH_NAMES
    if order == "reversed":
        names, data_v = names[::-1], data_v[::-1]
    elif order == "with Status":
        names, data_v = (*names, "Status"), np.vstack([data_v, np.zeros(data_v.shape[1])])
    path = eeg_path(root, subject, run, fmt)
    write_recording(path, data_v, sfreq_hz, names)
    write_events(events_path(path), _events_rows(stims_s, rts_s, duration_s), sfreq_hz)


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bids")
    for spec in GOOD:
        _write_good(root, *spec)
    six = eeg_path(root, "S03", 1, "set")
    write_recording(six, np.zeros((6, 700)), 100.0, CH_NAMES[:6])
    write_events(events_path(six), _events_rows((1.0,), (1.0,), 7.0), 100.0)
    garbage = eeg_path(root, "S03", 2, "bdf")
    garbage.write_bytes(b"\x00not a bdf file" * 64)
    write_events(events_path(garbage), _events_rows((1.0,), (1.0,), 7.0), 100.0)
    return root


@pytest.fixture(scope="module")
def cache(bids_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("cache") / "windows.h5"
    summary = build_window_cache(bids_root, out, CFG, progress=False)
    return out, summary


def _source_rows(cache_path: Path, label: str) -> np.ndarray:
    with h5py.File(cache_path, "r") as h5:
        paths = [s["path"] for s in json.loads(h5.attrs["sources"])]
        return np.flatnonzero(h5["recording"][()] == paths.index(label))


def _label(root: Path, subject: str, run: int, fmt: str) -> str:
    """How the cache names a recording: the root's folder, then the path below it."""
    return f"{root.name}/sub-{subject}/eeg/{eeg_path(Path(), subject, run, fmt).name}"


@pytest.mark.parametrize("spec", GOOD, ids=[f"{s[2]}-{s[3]:g}Hz-{s[7]}" for s in GOOD])
def test_impulse_lands_at_sample_50(cache: tuple[Path, dict], bids_root: Path,
                                    spec: tuple[Any, ...]) -> None:
    cache_path, _ = cache
    subject, run, fmt, sfreq_hz, stims_s, rts_s, _, _ = spec
    rows = _source_rows(cache_path, _label(bids_root, subject, run, fmt))
    with h5py.File(cache_path, "r") as h5:
        eeg = h5["eeg"][rows[0]:rows[-1] + 1]
        trial, rt = h5["trial"][rows], h5["rt"][rows]
    n_fit = sum(stim_s + CFG.window_stop_s <= spec[6] for stim_s in stims_s)
    assert list(trial) == list(range(n_fit))
    assert rt == pytest.approx(rts_s[:n_fit], abs=1e-4)
    for k, window in zip(trial, eeg, strict=True):
        channel = index_of(IMPULSE_CHANNELS[k])
        peak = np.unravel_index(np.abs(window).argmax(), window.shape)
        assert peak == (channel, 50)
        if sfreq_hz == CFG.sfreq_hz:  # no resampling: the impulse is intact, in volts
            assert window[channel, 50] == pytest.approx(IMPULSE_V, abs=5 * NOISE_V)


def test_cache_layout_and_provenance(cache: tuple[Path, dict], bids_root: Path) -> None:
    cache_path, summary = cache
    with h5py.File(cache_path, "r") as h5:
        assert h5["eeg"].shape == (9, 129, 200)
        assert h5["eeg"].dtype == np.float32
        assert h5["eeg"].chunks == (1, 129, 200)
        assert h5["eeg"].compression is None
        dtypes = {name: h5[name].dtype for name in
                  ("rt", "run", "trial", "stim_onset_s", "response_onset_s", "correct",
                   "recording")}
        assert set(h5["release"].asstr()[()]) == {""}  # no participants.tsv, no R<n> name
        assert dtypes == {"rt": np.float32, "run": np.int16, "trial": np.int32,
                          "stim_onset_s": np.float64, "response_onset_s": np.float64,
                          "correct": np.bool_, "recording": np.int32}
        assert list(h5["subject"].asstr()[()]) == ["S01"] * 4 + ["S02"] * 4 + ["S04"]
        assert set(h5["hand"].asstr()[()]) == {"left"}
        assert list(h5["correct"][:2]) == [False, True]
        assert h5["response_onset_s"][0] - h5["stim_onset_s"][0] == pytest.approx(1.2)
        attrs = dict(h5.attrs)
    assert attrs["n_times"] == 200 and attrs["sfreq_hz"] == 100.0
    assert (attrs["window_start_s"], attrs["window_stop_s"]) == (0.5, 2.5)
    assert list(attrs["ch_names"]) == list(CH_NAMES)
    assert json.loads(attrs["bids_roots"]) == [str(bids_root.resolve())]
    assert json.loads(attrs["config"]) == json.loads(json.dumps(dataclasses.asdict(CFG)))
    assert attrs["code_version"] and attrs["created"].startswith("20")
    sources = json.loads(attrs["sources"])
    assert [(s["subject"], s["run"], s["format"], s["input_sfreq_hz"], s["n_windows"])
            for s in sources] == [("S01", 1, "set", 100.0, 2), ("S01", 2, "bdf", 500.0, 2),
                                  ("S02", 1, "bdf", 100.0, 2), ("S02", 2, "set", 500.0, 2),
                                  ("S04", 1, "bdf", 100.0, 1)]
    assert json.loads(attrs["dropped_trials"]) == {"window past end of recording": 2}
    assert {k: summary[k] for k in ("n_windows", "n_subjects", "n_recordings", "n_skipped")} \
        == {"n_windows": 9, "n_subjects": 3, "n_recordings": 5, "n_skipped": 2}


def test_bad_recordings_are_skipped_with_a_reason(cache: tuple[Path, dict]) -> None:
    cache_path, summary = cache
    with h5py.File(cache_path, "r") as h5:
        skipped = json.loads(h5.attrs["skipped"])
    assert skipped == summary["skipped"]
    reasons = {s["path"].split("/", 1)[1]: s["reason"] for s in skipped}
    assert reasons["sub-S03/eeg/sub-S03_task-contrastChangeDetection_run-1_eeg.set"] \
        == "6 channels, expected 129 (E1..E128, Cz)"
    assert reasons["sub-S03/eeg/sub-S03_task-contrastChangeDetection_run-2_eeg.bdf"] \
        .startswith("ValueError: ")


def test_missing_events_or_no_trial_is_skipped(tmp_path: Path) -> None:
    _write_good(tmp_path, "A", 1, "set", 100.0, (1.0,), (1.0,), 4.0, "canonical")
    _write_good(tmp_path, "A", 2, "set", 100.0, (1.0,), (1.0,), 4.0, "canonical")
    events_path(eeg_path(tmp_path, "A", 2, "set")).unlink()
    _write_good(tmp_path, "A", 3, "set", 100.0, (1.0,), (1.0,), 3.0, "canonical")  # past end

    summary = build_window_cache(tmp_path, tmp_path / "w.h5", CFG, progress=False)

    assert summary["n_windows"] == 1
    assert [s["reason"] for s in summary["skipped"]] == [
        "no events file sub-A_task-contrastChangeDetection_run-2_events.tsv",
        "no valid trial (1 window past end of recording)"]
    assert summary["dropped_trials"] == {}  # drops of skipped recordings are in their reason


def test_window_before_the_recording_is_dropped(tmp_path: Path) -> None:
    _write_good(tmp_path, "A", 1, "set", 100.0, (1.0, 3.0), (1.0, 1.0), 5.0, "canonical")
    cfg = WindowsConfig(window_start_s=-1.5, window_stop_s=0.5)

    summary = build_window_cache(tmp_path, tmp_path / "w.h5", cfg, progress=False)

    assert summary["dropped_trials"] == {"window before start of recording": 1}
    windows = load_windows(tmp_path / "w.h5")
    assert list(windows.trial) == [1] and windows.eeg.shape == (1, 129, 200)


def test_no_window_at_all_writes_nothing(tmp_path: Path) -> None:
    garbage = eeg_path(tmp_path / "bids", "A", 1, "bdf")
    garbage.parent.mkdir(parents=True)
    garbage.write_bytes(b"junk")
    out = tmp_path / "w.h5"
    out.write_bytes(b"old cache")

    with pytest.raises(RuntimeError, match="none of 1 recording"):
        build_window_cache(tmp_path / "bids", out, CFG, progress=False)

    assert out.read_bytes() == b"old cache"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bids", "w.h5"]


def test_build_validates_config(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="WindowsConfig"):
        build_window_cache(tmp_path, tmp_path / "w.h5", {"sfreq_hz": 100})  # type: ignore


# ---------------------------------------------------------------------------- split

def test_make_split_is_disjoint_and_reproducible() -> None:
    subjects = [f"NDAR{i:03d}" for i in range(20) for _ in range(3)]
    split = make_split(subjects, WindowsConfig(val_fraction=0.2, split_seed=7))

    # 4 of 20 validate; the tune set is 20 % of the 16 left
    assert [len(split[side]) for side in ("train", "tune", "val")] == [13, 3, 4]
    sides = [set(split[side]) for side in ("train", "tune", "val")]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert sides[0] | sides[1] | sides[2] == set(subjects)
    assert all(split[side] == sorted(split[side]) for side in ("train", "tune", "val"))
    assert make_split(list(reversed(subjects)),
                      WindowsConfig(val_fraction=0.2, split_seed=7)) == split
    assert make_split(subjects, WindowsConfig(val_fraction=0.2, split_seed=8))["val"] \
        != split["val"]
    # the validation side does not move with the tune share
    other_tune = make_split(subjects, WindowsConfig(val_fraction=0.2, split_seed=7,
                                                    tune_fraction=0.5))
    assert other_tune["val"] == split["val"] and len(other_tune["tune"]) == 8
    # training and tuning are never empty
    tiny = make_split(["a", "b", "c"], WindowsConfig(val_fraction=0.9, tune_fraction=0.9))
    assert [len(tiny[side]) for side in ("train", "tune", "val")] == [1, 1, 1]


def test_a_side_with_one_window_takes_another_subject() -> None:
    # "a" has one window: whichever side draws it first takes the next subject too
    subjects = ["a"] + [s for s in "bcdefghij" for _ in range(5)]
    for seed in range(20):
        split = make_split(subjects, WindowsConfig(val_fraction=0.1, tune_fraction=0.1,
                                                   split_seed=seed))
        for side in ("tune", "val"):
            assert sum(subjects.count(s) for s in split[side]) >= 2
            assert len(split[side]) == (2 if split[side][0] == "a" else 1)


def test_make_split_errors() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        make_split(["a", "a", "b"], WindowsConfig())
    with pytest.raises(TypeError, match="subjects"):
        make_split("ab", WindowsConfig())


def test_write_and_read_split(cache: tuple[Path, dict], tmp_path: Path) -> None:
    cache_path, _ = cache
    split = write_split(cache_path, tmp_path / "split.json",
                             WindowsConfig(val_fraction=0.34, split_seed=1))

    assert read_split(tmp_path / "split.json") == split
    assert [len(split[side]) for side in ("train", "tune", "val")] == [1, 1, 1]
    assert split["cache"] == cache_identity(cache_path)
    assert split["cache"]["n_windows"] == 9 and split["cache"]["n_subjects"] == 3

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": ["S01", "S02"], "tune": ["S03"], "val": ["S02"]}))
    with pytest.raises(ValueError, match=r"both train and val: \['S02'\]"):
        read_split(bad)
    bad.write_text(json.dumps({"train": ["S01"], "tune": ["S01"], "val": ["S02"]}))
    with pytest.raises(ValueError, match=r"both train and tune: \['S01'\]"):
        read_split(bad)
    bad.write_text(json.dumps({"train": ["S01"], "tune": ["S03"], "val": []}))
    with pytest.raises(ValueError, match="'val' must be a non-empty list"):
        read_split(bad)
    bad.write_text(json.dumps({"train": ["S01"], "val": ["S02"]}))
    with pytest.raises(ValueError, match=r"without a tune set.*make windows"):
        read_split(bad)


# ---------------------------------------------------------------------------- loading

def test_load_windows_selects_exactly_the_subjects(cache: tuple[Path, dict]) -> None:
    cache_path, _ = cache
    every = load_windows(cache_path)
    some = load_windows(cache_path, {"S01", "S04"})

    assert len(every) == 9 and every.eeg.shape == (9, 129, 200)
    assert list(some.index) == [0, 1, 2, 3, 8]  # two runs of rows, ascending
    assert list(some.subject) == ["S01"] * 4 + ["S04"]
    np.testing.assert_array_equal(some.eeg, every.eeg[some.index])
    np.testing.assert_array_equal(some.rt, every.rt[some.index])
    np.testing.assert_array_equal(some.trial, [0, 1, 0, 1, 0])
    assert (some.sfreq_hz, some.window_start_s) == (100.0, 0.5)
    assert some.eeg.dtype == np.float32 and some.rt.dtype == np.float32
    assert len(load_windows(cache_path, [])) == 0


def test_load_windows_errors(cache: tuple[Path, dict], tmp_path: Path) -> None:
    cache_path, _ = cache
    with pytest.raises(ValueError, match=r"\['S99'\] not in the cache"):
        load_windows(cache_path, ["S01", "S99"])
    with pytest.raises(TypeError, match="subjects"):
        load_windows(cache_path, "S01")
    with pytest.raises(FileNotFoundError, match="cache_path"):
        load_windows(tmp_path / "none.h5")


def test_cache_summary(cache: tuple[Path, dict]) -> None:
    cache_path, _ = cache
    summary = cache_summary(cache_path)
    rts = [1.2, 0.3, 1.7, 2.1, 0.9, 1.4, 1.1, 1.3, 1.6]
    assert (summary["n_windows"], summary["n_subjects"], summary["n_recordings"]) == (9, 3, 5)
    assert len(summary["skipped"]) == 2
    assert summary["rt_mean_s"] == pytest.approx(np.mean(rts), abs=1e-4)
    assert summary["rt_std_s"] == pytest.approx(np.std(rts), abs=1e-4)
    assert (summary["sfreq_hz"], summary["n_times"]) == (100.0, 200)


# ---------------------------------------------------------------------------- job

def test_windows_job(bids_root: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("windows_job", REPO / "jobs" / "windows.py")
    assert spec is not None and spec.loader is not None
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)

    rc = job.main(["--bids-root", str(bids_root), "--out", str(tmp_path / "w.h5"),
                   "--split-out", str(tmp_path / "split.json"),
                   "--set", "windows.split_seed=3"])

    assert rc == 0
    split = read_split(tmp_path / "split.json")
    assert split["seed"] == 3 and split["cache"]["n_windows"] == 9


# ---------------------------------------------------------------------------- releases

def test_several_roots_one_cache_with_releases_and_duplicates(tmp_path: Path) -> None:
    r1, r5 = tmp_path / "R1_L100", tmp_path / "ds005509-R5"
    _write_good(r1, "A", 1, "set", 100.0, (1.0,), (1.0,), 4.0, "canonical")
    _write_good(r1, "B", 1, "set", 100.0, (1.0,), (0.8,), 4.0, "canonical")
    _write_good(r5, "C", 1, "set", 100.0, (1.0,), (1.1,), 4.0, "canonical")
    _write_good(r5, "B", 1, "set", 100.0, (1.0,), (1.9,), 4.0, "canonical")  # again
    (r5 / "participants.tsv").write_text("participant_id\trelease_number\nsub-C\tR5\n")

    summary = build_window_cache([r1, r5], tmp_path / "w.h5", CFG, progress=False)

    assert (summary["n_subjects"], summary["n_windows"]) == (3, 3)
    (duplicate,) = summary["duplicates"]
    assert duplicate["subject"] == "B" and duplicate["path"].startswith("ds005509-R5/sub-B/")
    assert f"also in {r1}" in duplicate["reason"]
    windows = load_windows(tmp_path / "w.h5")
    assert list(windows.subject) == ["A", "B", "C"]
    assert windows.rt.tolist() == pytest.approx([1.0, 0.8, 1.1])  # B's from R1, not R5
    digest = cache_summary(tmp_path / "w.h5")
    assert digest["windows_per_release"] == {"R1": 2, "R5": 1}
    assert digest["bids_roots"] == [str(r1), str(r5)]
    assert digest["duplicates"] == summary["duplicates"]


def test_val_releases_hold_out_whole_releases() -> None:
    subjects = ["A", "A", "B", "C", "D"]
    releases = ["R1", "R1", "R5", "R2", "R5"]
    split = make_split(subjects, WindowsConfig(val_releases=("R5",)), releases)
    assert split["val"] == ["B", "D"] and sorted(split["train"] + split["tune"]) == ["A", "C"]
    assert split["val_releases"] == ["R5"]
    with pytest.raises(ValueError, match="no subject of those releases"):
        make_split(subjects, WindowsConfig(val_releases=("R9",)), releases)
    with pytest.raises(ValueError, match="nothing is left to train on"):
        make_split(subjects, WindowsConfig(val_releases=("R1", "R5")), releases)


def test_enough_subjects_stops_reading(tmp_path: Path) -> None:
    for subject in ("A", "B", "C", "D"):
        _write_good(tmp_path, subject, 1, "set", 100.0, (1.0,), (1.0,), 4.0, "canonical")
    (tmp_path / "sub-A" / "eeg" / "sub-A_task-contrastChangeDetection_run-1_eeg.set"
     ).write_bytes(b"broken")

    summary = build_window_cache(tmp_path, tmp_path / "w.h5", WindowsConfig(workers=1),
                                 progress=False, enough_subjects=2)

    assert summary["n_subjects"] == 2 and summary["n_skipped"] == 1
    assert list(load_windows(tmp_path / "w.h5").subject) == ["B", "C"]


# ---------------------------------------------------------------------------- signal checks

def _signal(rng: np.random.Generator, scale_v: float = NOISE_V) -> np.ndarray:
    data_v = rng.normal(0.0, scale_v, (len(CH_NAMES), 1000))
    data_v[index_of("Cz")] = 0.0
    return data_v


def test_check_signal_counts_flat_and_noisy_channels() -> None:
    data_v = _signal(np.random.default_rng(0))
    data_v[index_of("E7")] = 0.0
    data_v[index_of("E9")] *= 30.0
    data_v[index_of("E11"), 10] = np.nan  # one NaN does not hide the channel's signal
    check = check_signal(data_v, CFG)
    assert check.flat_channels == ["E7", "Cz"] and check.noisy_channels == ["E9"]
    assert check.median_abs_v == pytest.approx(NOISE_V * 0.6745, rel=0.05)


@pytest.mark.parametrize(("scale", "match"), [
    (0.0, "129 of 129 channels flat"), (1e6, r"median \|x\| = 0.67\d: microvolts\?"),
    (1e4, r"millivolts\?"), (0.05, r"scaled down\?")])
def test_check_signal_rejects_implausible_recordings(scale: float, match: str) -> None:
    data_v = _signal(np.random.default_rng(1)) * scale
    with pytest.raises(UnusableRecording, match=match):
        check_signal(data_v, CFG)


def test_nearly_all_flat_is_skipped_and_a_few_flat_are_kept() -> None:
    data_v = _signal(np.random.default_rng(2))
    data_v[:60] = 0.0
    assert len(check_signal(data_v, CFG).flat_channels) == 61
    data_v[:70] = 0.0
    with pytest.raises(UnusableRecording, match="71 of 129 channels flat"):
        check_signal(data_v, CFG)


@pytest.mark.parametrize(("folder", "release"), [
    ("R3_L100_bdf", "R3"), ("R11_mini_L100", "R11"), ("EEG2025r5mini", "R5"),
    ("ds005509-bdf", "R5"), ("ds005516", "R11"), ("ds005513", ""),
    ("HBNR3", "")])
def test_release_from_the_root_name_without_participants(tmp_path: Path, folder: str,
                                                          release: str) -> None:
    path = eeg_path(tmp_path / folder, "A", 1, "bdf")
    path.parent.mkdir(parents=True)
    path.touch()
    assert find_recordings(tmp_path / folder)[0].release == release


def test_a_root_given_twice_is_an_error(tmp_path: Path) -> None:
    _write_good(tmp_path / "R1", "A", 1, "set", 100.0, (1.0,), (1.0,), 4.0, "canonical")
    with pytest.raises(ValueError, match="given more than once"):
        build_window_cache([tmp_path / "R1", tmp_path / "R1" / ".." / "R1"],
                           tmp_path / "w.h5", CFG, progress=False)


def test_no_live_channel_is_said_so_whatever_the_flat_share() -> None:
    data_v = np.zeros((len(CH_NAMES), 100))
    with pytest.raises(UnusableRecording, match="every channel flat"):
        check_signal(data_v, WindowsConfig(max_flat_share=1.0))


# Loaded by every Python process that starts with this folder on PYTHONPATH: the worker
# processes of the window stage then die (as a crashing file reader would) on one subject.
_CRASHING_READER = """
import os
if os.environ.get("CRASH_ON_SUBJECT"):
    import overnight.windows.build as build
    _cut = build.cut_windows

    def _crashing(rec, cfg):
        if rec.subject == os.environ["CRASH_ON_SUBJECT"]:
            os._exit(3)
        return _cut(rec, cfg)

    build.cut_windows = _crashing
"""


def test_a_reader_that_crashes_skips_only_its_recording(tmp_path: Path, monkeypatch) -> None:
    for subject in ("A", "B", "C"):
        _write_good(tmp_path / "bids", subject, 1, "set", 100.0, (1.0,), (1.0,), 4.0,
                    "canonical")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_CRASHING_READER)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path / "site"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("CRASH_ON_SUBJECT", "A")  # the first recording: nothing read before

    summary = build_window_cache(tmp_path / "bids", tmp_path / "w.h5",
                                 WindowsConfig(workers=2), progress=False)

    assert summary["n_subjects"] == 2
    (skip,) = summary["skipped"]
    assert "sub-A" in skip["path"] and "reader process died" in skip["reason"]
    assert list(load_windows(tmp_path / "w.h5").subject) == ["B", "C"]


def test_margins_hold_the_signal_around_each_window(tmp_path: Path) -> None:
    """The cache keeps margin_s on each side of every window, the recording's edge samples
    standing in beyond its ends, and the window itself is unchanged."""
    cfg = WindowsConfig(margin_s=1.0)
    sfreq_hz, stims_s = 100.0, (0.2, 3.0)
    duration_s = stims_s[-1] + cfg.window_stop_s + 0.2  # the last margin passes the end
    n_samples = round(duration_s * sfreq_hz)
    # every sample tells where it is: a ramp in time, offset per channel
    data_v = (np.arange(n_samples)[None, :] * 1e-6
              + np.arange(len(CH_NAMES))[:, None] * 1e-8 + 1e-6)
    path = eeg_path(tmp_path / "bids", "M", 1, "set")
    write_recording(path, data_v, sfreq_hz)
    write_events(events_path(path), _events_rows(stims_s, (1.0, 1.0), duration_s), sfreq_hz)
    out = tmp_path / "w.h5"
    build_window_cache(tmp_path / "bids", out, cfg, progress=False)

    margin, n_times = cfg.margin_samples, cfg.n_times
    padded = np.pad(data_v, ((0, 0), (margin, margin)), mode="edge")
    with open_cache(out) as cache:
        assert cache.margin_samples == margin == 100
        context = cache.read_context(np.arange(2))
        windows = cache.read_eeg(np.arange(2))
    assert context.shape == (2, len(CH_NAMES), n_times + 2 * margin)
    np.testing.assert_array_equal(context[..., margin:margin + n_times], windows)
    for k, stim_s in enumerate(stims_s):
        start = round((stim_s + cfg.window_start_s) * sfreq_hz)
        np.testing.assert_allclose(context[k], padded[:, start:start + n_times + 2 * margin],
                                   rtol=1e-6)
    assert (context[0, :, :30] == context[0, :, :1]).all()  # before the recording: sample 0
    assert (context[1, :, -20:] == context[1, :, -1:]).all()  # past its end: the last one
    with open_cache(out) as cache:
        np.testing.assert_array_equal(cache.read_context(np.array([1])), context[1:])


def test_a_cache_without_margin_reads_its_windows_as_context(tmp_path: Path) -> None:
    _write_good(tmp_path / "bids", "A", 1, "set", 100.0, (1.0,), (1.0,), 4.0, "canonical")
    out = tmp_path / "w.h5"
    build_window_cache(tmp_path / "bids", out, WindowsConfig(margin_s=0.0), progress=False)
    with open_cache(out) as cache, h5py.File(out, "r") as h5:
        assert cache.margin_samples == 0 and "eeg_before" not in h5
        np.testing.assert_array_equal(cache.read_context(np.array([0])),
                                      cache.read_eeg(np.array([0])))
