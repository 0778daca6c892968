"""Stage windows on HBN R1's real events and sidecars, with synthetic EEG of each file's real
length and rate: one window per stored official trial whose window fits in the recording."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from overnight.config import WindowsConfig
from overnight.hbn.bids import PARTICIPANTS_FILE, write_recording
from overnight.hbn.channels import CH_NAMES
from overnight.units import to_samples
from overnight.windows.build import build_window_cache
from overnight.windows.cache import open_cache
from tests import hbn_r1

# One reader process: spawning workers (each importing MNE) would cost more than the reading.
CFG = WindowsConfig(workers=1)
# The three shortest CCD runs of R1 (140-188 s at 500 Hz): about 70-95 MB of float64 each.
SHORT_RUNS = ("NDARPX219TW0_task-contrastChangeDetection_run-3",
              "NDARYT885XH3_task-contrastChangeDetection_run-3",
              "NDARXG469XGP_task-contrastChangeDetection_run-3")
# The one R1 run whose recording stops inside its last kept trial's window (the stimulus at
# 752.436 s, the recording 754.878 s long): 755 s at 500 Hz, too big for the default suite.
CUT_SHORT_RUN = "NDARNR773DL4_task-contrastChangeDetection_run-3"
SIDECARS = ("_events.tsv", "_eeg.json", "_channels.tsv")
NOISE_V = (1e-5, 5e-5)  # per-channel std range of the synthetic EEG, volts


def _real_tree(root: Path, runs: tuple[str, ...], seed: int = 0) -> dict[str, float]:
    """A BIDS root with the real events and sidecars of ``runs``, each beside a synthetic
    500 Hz EEGLAB recording of its real length; the duration of each run, seconds."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in (PARTICIPANTS_FILE, "dataset_description.json"):
        shutil.copyfile(hbn_r1.DATA_ROOT / name, root / name)
    durations = {}
    for run in runs:
        folder = Path(f"sub-{run.split('_')[0]}") / "eeg"
        (root / folder).mkdir(parents=True, exist_ok=True)
        for suffix in SIDECARS:
            shutil.copyfile(hbn_r1.DATA_ROOT / folder / f"sub-{run}{suffix}",
                            root / folder / f"sub-{run}{suffix}")
        sidecar = json.loads((root / folder / f"sub-{run}_eeg.json").read_text())
        sfreq_hz, duration_s = sidecar["SamplingFrequency"], sidecar["RecordingDuration"]
        # (129, n_samples) volts: white noise of a per-channel std; Cz, the reference, flat
        std_v = rng.uniform(*NOISE_V, size=(len(CH_NAMES), 1))
        shape = (len(CH_NAMES), round(duration_s * sfreq_hz))
        data_v = rng.standard_normal(shape, dtype=np.float32) * std_v  # float32: half the time
        data_v[CH_NAMES.index("Cz")] = 0.0
        write_recording(root / folder / f"sub-{run}_eeg.set", data_v, sfreq_hz)
        durations[run] = duration_s
    return durations


def _fitting_trials(run: str, duration_s: float) -> list[hbn_r1.TrialRow]:
    """The stored official trials of ``run`` whose window lies inside the recording."""
    _, files = hbn_r1.read_expected()
    subject = run.split("_")[0]
    stored = files[f"sub-{subject}/eeg/sub-{run}_events.tsv"].trials
    n_samples = to_samples(duration_s, CFG.sfreq_hz)
    return [row for row in stored
            if 0 <= to_samples(float(row[3]) + CFG.window_start_s, CFG.sfreq_hz)
            <= n_samples - CFG.n_times]


def _check_windows(tmp_path: Path, runs: tuple[str, ...]) -> dict[str, int]:
    """Stage windows on ``runs``; the windows of each must be its fitting stored trials."""
    durations = _real_tree(tmp_path / "bids", runs)
    result = build_window_cache(tmp_path / "bids", tmp_path / "windows.h5", CFG,
                                progress=False)
    assert result["n_skipped"] == 0, result["skipped"]
    with open_cache(tmp_path / "windows.h5") as cache:
        subject, run = cache.subjects(), cache.column("run")
        trial, stim = cache.column("trial"), cache.column("stim_onset_s")
        rt, hand = cache.column("rt"), cache.column("hand")
        release = cache.column("release")
        assert cache.eeg.shape[1:] == (len(CH_NAMES), CFG.n_times)
    assert set(release.astype(str)) == {"R1"}  # from the real participants.tsv
    n_windows = {}
    for name, duration_s in durations.items():
        label, run_number = name.split("_")[0], int(name.split("_run-")[1])
        rows = (subject.astype(str) == label) & (run == run_number)
        expected = _fitting_trials(name, duration_s)
        assert trial[rows].tolist() == [int(row[2]) for row in expected], name
        assert stim[rows].tolist() == [float(row[3]) for row in expected], name
        np.testing.assert_allclose(rt[rows], [float(row[5]) for row in expected], atol=1e-6)
        assert hand[rows].tolist() == [row[7] for row in expected], name
        n_windows[name] = int(rows.sum())
    assert sum(n_windows.values()) == result["n_windows"]
    return n_windows


def test_the_real_short_runs_give_one_window_per_stored_trial(tmp_path: Path) -> None:
    assert _check_windows(tmp_path, SHORT_RUNS) == dict(zip(SHORT_RUNS, (24, 21, 17),
                                                            strict=True))


@pytest.mark.slow
def test_a_trial_past_the_real_end_of_a_recording_is_not_a_window(tmp_path: Path) -> None:
    _, files = hbn_r1.read_expected()
    subject = CUT_SHORT_RUN.split("_")[0]
    assert len(files[f"sub-{subject}/eeg/sub-{CUT_SHORT_RUN}_events.tsv"].trials) == 22
    assert _check_windows(tmp_path, (CUT_SHORT_RUN,)) == {CUT_SHORT_RUN: 21}
