"""Tests for overnight.hbn.synth: the real format, determinism, quirks, physiology, windows."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import math
import re
from pathlib import Path

import mne
import numpy as np
import pytest

from overnight.config import SynthConfig
from overnight.hbn.bids import (
    EVENT_COLUMNS,
    PARTICIPANT_COLUMNS,
    eeg_path,
    events_path,
    read_events,
)
from overnight.hbn.channels import CH_NAMES, N_CHANS, index_of
from overnight.hbn.events import EVENT_CODES
from overnight.hbn.synth import TRUTH_COLUMNS, generate_dataset, simulate_windows

TINY = SynthConfig(n_subjects=3, runs_per_subject=2, trials_per_run=8, seed=7)
MID = SynthConfig(n_subjects=6, runs_per_subject=3, trials_per_run=30, seed=11)


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def read_eeg(path: Path) -> mne.io.BaseRaw:
    return mne.io.read_raw(path, preload=True, verbose="error")


def recordings(root: Path, cfg: SynthConfig) -> list[Path]:
    subjects = [row["participant_id"][4:] for row in read_tsv(root / "participants.tsv")]
    return [eeg_path(root, s, run, cfg.fmt) for s in subjects
            for run in range(1, cfg.runs_per_subject + 1)]


def trials_from_events(rows: list[dict[str, str]]) -> list[tuple[float | None, float | None]]:
    """(stimulus onset or None, RT or None) per contrastTrial_start, the last trial included,
    by the REFERENCE rules (the target and then the press inside the trial's span)."""
    starts = [i for i, row in enumerate(rows) if row["value"] == "contrastTrial_start"]
    trials = []
    for first, stop in zip(starts, [*starts[1:], len(rows)], strict=True):
        inside = rows[first:stop]
        stim = next((float(r["onset"]) for r in inside if r["value"].endswith("_target")), None)
        presses = [float(r["onset"]) for r in inside if stim is not None
                   and r["value"].endswith("_buttonPress") and float(r["onset"]) >= stim]
        trials.append((stim, presses[0] - stim if presses else None))
    return trials


def n_trials(root: Path, cfg: SynthConfig) -> int:
    """Trials in the tree: trials_per_run per block, one or two blocks per run."""
    counts = json.loads((root / "derivatives" / "synth" / "synth.json").read_text())["counts"]
    n_runs = cfg.n_subjects * cfg.runs_per_subject
    return cfg.trials_per_run * (n_runs + counts.get("two_blocks", 0))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    generate_dataset(root, TINY, progress=False)
    return root


@pytest.fixture(scope="module")
def mid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mid")
    generate_dataset(root, MID, progress=False)
    return root


@pytest.fixture(scope="module")
def windows() -> dict[str, np.ndarray]:
    return simulate_windows(1500, n_subjects=10, seed=3)


# --------------------------------------------------------------------------- layout


def test_layout_and_names(tiny: Path) -> None:
    description = json.loads((tiny / "dataset_description.json").read_text())
    assert description["DatasetType"] == "raw"
    assert {"Name", "BIDSVersion", "GeneratedBy"} <= set(description)
    assert not (tiny / ".synth-partial").exists()
    for path in recordings(tiny, TINY):
        assert re.fullmatch(r"sub-NDAR[A-Z0-9]{8}_task-contrastChangeDetection_run-[12]_eeg\.set",
                            path.name)
        assert path.is_file() and events_path(path).is_file()
    assert len(list(tiny.glob("sub-*/eeg/*_eeg.set"))) == 6
    synth = json.loads((tiny / "derivatives" / "synth" / "synth.json").read_text())
    assert synth["config"] == dataclasses.asdict(TINY)
    assert synth["counts"]["trials"] == n_trials(tiny, TINY)


def test_participants(tiny: Path) -> None:
    rows = read_tsv(tiny / "participants.tsv")
    assert tuple(rows[0]) == PARTICIPANT_COLUMNS
    ids = [row["participant_id"] for row in rows]
    assert len(set(ids)) == 3
    assert all(re.fullmatch(r"sub-NDAR[A-Z0-9]{8}", pid) for pid in ids)
    assert [row["release_number"] for row in rows] == ["R1", "R2", "R3"]
    for row in rows:
        assert row["sex"] in {"M", "F"}
        assert 5.0 <= float(row["age"]) <= 21.0
        assert -100 <= float(row["ehq_total"]) <= 100
        for column in ("p_factor", "attention", "internalizing", "externalizing"):
            assert row[column] == "n/a" or math.isfinite(float(row[column]))
        assert [row[f"contrastChangeDetection_{run}"] for run in (1, 2, 3)] == [
            "available", "available", "unavailable"]  # TINY has 2 runs
        assert set(row[c] for c in PARTICIPANT_COLUMNS[11:]) <= {"available", "unavailable",
                                                                "caution"}


def test_events_are_in_the_real_format(tiny: Path) -> None:
    """As the 100 Hz releases write them (REFERENCE): no sample column, break cnt and the
    block start first, break cnt and 9999 last, event_code as text, no end_experiment."""
    for path in recordings(tiny, TINY):
        header = events_path(path).read_text(encoding="utf-8").splitlines()[0].split("\t")
        assert header in ([c for c in EVENT_COLUMNS if c != "sample"],
                          [c for c in EVENT_COLUMNS if c not in ("sample", "feedback")])
        rows = read_events(events_path(path))
        assert (rows[0]["onset"], rows[0]["value"], rows[0]["event_code"]) == (
            "0", "break cnt", "break cnt")
        assert (rows[1]["value"], rows[1]["event_code"]) == ("contrastChangeB1_start", "94")
        assert [r["value"] for r in rows[-2:]] == ["break cnt", "9999"]
        assert rows[-1]["event_code"] == "9999"
        assert all(row["duration"] == "n/a" for row in rows)
        onsets = [float(row["onset"]) for row in rows]
        assert onsets == sorted(onsets)
        assert np.allclose(np.round(np.array(onsets) * 100), np.array(onsets) * 100)
        for row in rows:
            assert row["event_code"] == EVENT_CODES[row["value"]]
            if "feedback" not in row:
                continue
            if row["value"].endswith("_buttonPress"):
                assert row["feedback"] in {"smiley_face", "sad_face", "non_target"}
            else:
                assert row["feedback"] == "n/a"
        assert "end_experiment" not in {row["value"] for row in rows}
        assert sum(row["value"] == "contrastTrial_start" for row in rows) in (8, 16)


def test_sidecars(tiny: Path) -> None:
    for path in recordings(tiny, TINY):
        stem = path.name[: path.name.rindex("_eeg.")]
        sidecar = json.loads(path.with_name(f"{stem}_eeg.json").read_text())
        assert sidecar["SamplingFrequency"] == 100.0 and sidecar["EEGChannelCount"] == 129
        assert (sidecar["EEGReference"], sidecar["PowerLineFrequency"]) == ("Cz", 60)
        channels = read_tsv(path.with_name(f"{stem}_channels.tsv"))
        assert [row["name"] for row in channels] == list(CH_NAMES)
        assert {(row["type"], row["units"]) for row in channels} == {("EEG", "uV")}


def test_truth_matches_events(tiny: Path) -> None:
    truth = read_tsv(tiny / "derivatives" / "synth" / "truth.tsv")
    assert tuple(truth[0]) == TRUTH_COLUMNS
    assert len(truth) == n_trials(tiny, TINY)
    for path in recordings(tiny, TINY):
        pid, run = path.name.split("_")[0], path.name.split("run-")[1][0]
        rows = [r for r in truth if r["participant_id"] == pid and r["run"] == run]
        for (stim, rt), row in zip(trials_from_events(read_events(events_path(path))), rows,
                                   strict=True):
            if stim is None:
                assert row["stim_onset_s"] == row["rt_s"] == "n/a"
                continue
            assert float(row["stim_onset_s"]) == pytest.approx(stim, abs=1e-6)
            if rt is None:
                assert row["rt_s"] == "n/a"
            else:
                assert float(row["rt_s"]) == pytest.approx(rt, abs=1e-6)
                assert row["hand"] in {"left", "right"}
                assert abs(float(row["rt_encoded_s"]) - rt) < 2.0


def test_deterministic(tiny: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path, TINY, progress=False)
    for name in ("participants.tsv", "derivatives/synth/truth.tsv"):
        assert (tmp_path / name).read_bytes() == (tiny / name).read_bytes()
    first, again = recordings(tiny, TINY), recordings(tmp_path, TINY)
    for a, b in zip(first, again, strict=True):
        assert events_path(a).read_bytes() == events_path(b).read_bytes()
    np.testing.assert_array_equal(read_eeg(first[-1]).get_data(), read_eeg(again[-1]).get_data())
    other = simulate_windows(4, n_subjects=2, seed=1)
    same = simulate_windows(4, n_subjects=2, seed=1)
    np.testing.assert_array_equal(other["eeg"], same["eeg"])
    assert not np.array_equal(other["eeg"], simulate_windows(4, n_subjects=2, seed=2)["eeg"])


def test_subjects_independent_of_count(tiny: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path, dataclasses.replace(TINY, n_subjects=1), progress=False)
    first = read_tsv(tiny / "participants.tsv")[0]
    assert read_tsv(tmp_path / "participants.tsv") == [first]
    path = recordings(tmp_path, TINY)[0]
    assert events_path(path).read_bytes() == events_path(recordings(tiny, TINY)[0]).read_bytes()


def test_eeg_in_volts_with_flat_reference(tiny: Path) -> None:
    raw = read_eeg(recordings(tiny, TINY)[0])
    data = raw.get_data()
    assert raw.info["sfreq"] == 100.0 and data.shape[0] == N_CHANS
    assert raw.ch_names[-1] == "Cz" and not data[index_of("Cz")].any()
    std = data[:-1].std(axis=1)
    assert 2e-5 < np.median(std) < 5e-4
    assert std.min() > 2e-5 and std.max() < 5e-4


def test_windows_inside_recordings(tiny: Path) -> None:
    for path in recordings(tiny, TINY):
        duration_s = read_eeg(path).n_times / 100.0
        assert duration_s == int(duration_s)  # whole seconds
        for stim, rt in trials_from_events(read_events(events_path(path))):
            if stim is not None and rt is not None:
                assert stim + 2.5 <= duration_s


def test_500_hz_bdf(tmp_path: Path) -> None:
    cfg = SynthConfig(n_subjects=1, runs_per_subject=1, trials_per_run=8, sfreq_hz=500.0,
                      fmt="bdf", seed=2)
    generate_dataset(tmp_path, cfg, progress=False)
    path = recordings(tmp_path, cfg)[0]
    raw = read_eeg(path)
    assert path.suffix == ".bdf" and raw.info["sfreq"] == 500.0
    assert 2e-5 < np.median(raw.get_data()[:-1].std(axis=1)) < 5e-4
    assert np.abs(raw.get_data()[index_of("Cz")]).max() < 1e-9  # flat up to BDF resolution
    rows = read_events(events_path(path))
    onsets = np.array([float(r["onset"]) for r in rows])
    np.testing.assert_allclose(np.round(onsets * 500), onsets * 500, atol=1e-6)
    assert [int(r["sample"]) for r in rows] == np.round(onsets * 500).astype(int).tolist()
    assert len(raw.annotations) == 0  # whole seconds: no BDF padding


# --------------------------------------------------------------------------- quirks


def test_quirks_occur_at_plausible_rates(mid: Path) -> None:
    counts = json.loads((mid / "derivatives" / "synth" / "synth.json").read_text())["counts"]
    trials = counts["trials"]
    assert trials == n_trials(mid, MID)
    assert 0.01 < counts["no_response"] / trials < 0.12
    assert 0.03 < counts["double_press"] / counts["responses"] < 0.15
    assert 0.005 < counts["early_press"] / counts["responses"] < 0.08
    assert 0 < counts["wrong_hand"] / counts["responses"] < 0.08
    assert 0.07 < counts["press_before_target"] / trials < 0.21
    assert counts["no_target"] >= 1 and counts["two_blocks"] >= 1
    assert counts["no_feedback_column"] >= 1
    # ...and are visible in the files themselves.
    truth = read_tsv(mid / "derivatives" / "synth" / "truth.tsv")
    assert any(row["rt_s"] == "n/a" and row["rt_encoded_s"] == "n/a" for row in truth)
    assert any(row["rt_s"] != "n/a" and float(row["rt_s"]) < 0.5 for row in truth)
    events = [read_events(events_path(p)) for p in recordings(mid, MID)]
    rows = [row for run in events for row in run]
    assert sum(row.get("feedback") == "sad_face" for row in rows) >= 1
    assert sum(row.get("feedback") == "non_target" for row in rows) >= counts["double_press"]
    assert sum(row["value"] == "contrastChangeB2_start" for row in rows) == counts["two_blocks"]
    assert sum("feedback" not in run[0] for run in events) == counts["no_feedback_column"]
    doubles = 0
    for run in events:
        for i, row in enumerate(run[:-1]):
            doubles += (row["value"].endswith("_buttonPress")
                        and run[i + 1]["value"].endswith("_buttonPress"))
    assert doubles == counts["double_press"]


def test_rewrite_replaces_previous_tree(tiny: Path, tmp_path: Path) -> None:
    generate_dataset(tmp_path, TINY, progress=False)
    generate_dataset(tmp_path, dataclasses.replace(TINY, n_subjects=2), progress=False)
    assert len(list(tmp_path.glob("sub-*"))) == 2
    assert (tmp_path / "dataset_description.json").exists()


def test_refuses_foreign_root(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="no synthetic dataset"):
        generate_dataset(tmp_path, TINY, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(("changes", "error"), [
    ({"n_subjects": 0}, ValueError), ({"runs_per_subject": 4}, ValueError),
    ({"sfreq_hz": 250.0}, ValueError), ({"fmt": "edf"}, ValueError),
    ({"unexplained_rt_share": 1.5}, ValueError), ({"trials_per_run": 2.0}, TypeError),
    ({"seed": -1}, ValueError),
])
def test_config_validation(tmp_path: Path, changes: dict, error: type) -> None:
    with pytest.raises(error, match=next(iter(changes))):
        generate_dataset(tmp_path, dataclasses.replace(TINY, **changes), progress=False)


def test_argument_types(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cfg"):
        generate_dataset(tmp_path, {"n_subjects": 1}, progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="root"):
        generate_dataset(1, TINY, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_windows"):
        simulate_windows(0, n_subjects=1)
    with pytest.raises(TypeError, match="n_subjects"):
        simulate_windows(1, n_subjects=1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- windows


def test_windows_shapes_and_dtypes(windows: dict[str, np.ndarray]) -> None:
    assert windows["eeg"].shape == (1500, N_CHANS, 200) and windows["eeg"].dtype == np.float32
    for key in ("rt", "rt_encoded"):
        assert windows[key].shape == (1500,) and windows[key].dtype == np.float32
    assert len(set(windows["subject"])) == 10
    assert set(windows["hand"]) == {"left", "right"}
    assert 1.45 < windows["rt"].mean() < 1.75 and 0.3 < windows["rt"].std() < 0.5
    assert 2e-5 < windows["eeg"][:, :-1].std() < 5e-4
    assert not windows["eeg"][:, index_of("Cz")].any()
    at_500 = simulate_windows(3, n_subjects=1, sfreq_hz=500.0)
    assert at_500["eeg"].shape == (3, N_CHANS, 1000)


def test_unexplained_share(windows: dict[str, np.ndarray]) -> None:
    rt, encoded = windows["rt"].astype(float), windows["rt_encoded"].astype(float)
    regular = rt >= 0.5  # fast guesses are fully encoded by design
    share = np.var(rt[regular] - encoded[regular]) / np.var(rt[regular])
    assert share == pytest.approx(0.25, abs=0.04)
    none = simulate_windows(200, n_subjects=4, seed=5, unexplained_rt_share=0.0)
    np.testing.assert_allclose(none["rt"], none["rt_encoded"], atol=0.006)  # sample grid


def test_cpp_tracks_encoded_rt(windows: dict[str, np.ndarray]) -> None:
    """The CPz/Pz mean builds up faster for early responses and peaks at the encoded one."""
    cpp = windows["eeg"][:, [index_of("CPz"), index_of("Pz")]].mean(axis=1).astype(float)
    encoded = windows["rt_encoded"]
    t_s = 0.5 + np.arange(200) / 100.0
    # A steeper build-up gives a higher amplitude at a fixed latency (0.5-1.0 s).
    early_amplitude = cpp[:, t_s < 1.0].mean(axis=1)
    assert np.corrcoef(early_amplitude, encoded)[0, 1] < -0.05
    fast = cpp[(encoded > 0.9) & (encoded < 1.3)].mean(axis=0)
    slow = cpp[(encoded > 1.9) & (encoded < 2.3)].mean(axis=0)
    assert 0.8 < t_s[fast.argmax()] < 1.4 and 1.7 < t_s[slow.argmax()] < 2.4
    assert fast.max() > 1e-5 and slow.max() > 1e-5  # the bound, in volts


def test_motor_signals_lateralised(windows: dict[str, np.ndarray]) -> None:
    """Around the press, the contralateral motor channel is more negative."""
    c3, c4 = index_of("C3"), index_of("C4")
    press = np.round((windows["rt"] - 0.5) * 100).astype(int) - 3
    inside = (press >= 0) & (press < 200)
    rows = np.flatnonzero(inside)
    lateral = windows["eeg"][rows, c3, press[inside]] - windows["eeg"][rows, c4, press[inside]]
    right = windows["hand"][inside] == "right"
    assert lateral[right].mean() < lateral[~right].mean() - 1e-5


def test_job_main(tmp_path: Path) -> None:
    job = Path(__file__).resolve().parents[2] / "jobs" / "synth.py"
    spec = importlib.util.spec_from_file_location("synth_job", job)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bids"
    assert module.main(["--out", str(out), "--set", "synth.n_subjects=1",
                 "--set", "synth.runs_per_subject=1", "--set", "synth.trials_per_run=3"]) == 0
    assert (out / "dataset_description.json").exists()
    assert len(read_tsv(out / "derivatives" / "synth" / "truth.tsv")) == 3


def test_the_harder_setting_spreads_subjects_and_leaves_the_default_alone() -> None:
    from overnight.hbn.synth import _draw_subjects

    default = _draw_subjects(0, 4)
    same = _draw_subjects(0, 4, SynthConfig())
    hard = _draw_subjects(0, 4, SynthConfig(task_signal_scale=0.5, subject_sd=0.5,
                                            spatial_sd_m=0.01, latency_sd_s=0.05))
    for (a, _), (b, _) in zip(default, same, strict=True):
        assert a.gain == b.gain and np.array_equal(a.mixing_v, b.mixing_v)
        assert a.latency_s == 0.0
    assert all(s.latency_s != 0.0 for s, _ in hard)
    # moved task sources: the CPP pattern (last row) differs beyond the gain
    cpp_default = default[0][0].mixing_v[-1] / default[0][0].gain
    cpp_hard = hard[0][0].mixing_v[-1] / hard[0][0].gain
    assert not np.allclose(cpp_default / cpp_default.max(), cpp_hard / cpp_hard.max())
