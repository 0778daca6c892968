"""One CCD recording: find it in a BIDS root, read it with MNE, cut its trials into windows."""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from overnight.checks import as_path
from overnight.config import EEG_FORMATS, WindowsConfig
from overnight.hbn.bids import RECORDING_GLOB, TASK, events_path, read_events
from overnight.hbn.channels import CH_NAMES, N_CHANS
from overnight.hbn.events import Trial, parse_trials
from overnight.units import to_samples

log = logging.getLogger(__name__)

_EEG_FILE = re.compile(rf"sub-(?P<subject>[^_/]+)_task-{TASK}_run-(?P<run>\d+)_eeg\."
                       rf"(?P<fmt>{'|'.join(EEG_FORMATS)})")
# Band-pass high edge when resampling, as a share of the lower rate: 0.45 * rate keeps the
# edge and its transition band below that rate's Nyquist (0.5 * rate).
_MAX_H_FREQ_SHARE = 0.45


@dataclass(frozen=True)
class Recording:
    """One CCD run in a BIDS root."""

    subject: str  # without the ``sub-`` prefix
    run: int
    eeg_path: Path
    events_path: Path

    @property
    def fmt(self) -> str:
        """File format: ``"set"`` or ``"bdf"``."""
        return self.eeg_path.suffix.lstrip(".")


class UnusableRecording(Exception):
    """A recording that cannot be used, for a reason worth reporting as is."""


@dataclass(frozen=True)
class RecordingWindows:
    """The windows of one recording, one per kept trial."""

    eeg: np.ndarray  # (n, 129, n_times) float32 volts
    trials: list[Trial]
    input_sfreq_hz: float
    dropped: Counter[str]


def find_recordings(bids_root: str | os.PathLike[str]) -> list[Recording]:
    """Every CCD recording under ``bids_root``, sorted by subject then run.

    Where one run exists as both ``.set`` and ``.bdf``, the ``.set`` is used (logged once).

    Parameters
    ----------
    bids_root : str or PathLike
        The BIDS root holding ``sub-<id>/eeg/`` folders.

    Returns
    -------
    list of Recording
        With the ``_events.tsv`` path beside each file (it may not exist).

    Raises
    ------
    FileNotFoundError
        ``bids_root`` is not a directory, or holds no CCD recording.
    """
    root = as_path(bids_root, "bids_root")
    if not root.is_dir():
        raise FileNotFoundError(f"bids_root={str(root)!r}: not a directory")
    by_run: dict[tuple[str, int], Path] = {}
    n_both = 0
    for path in sorted(root.glob(RECORDING_GLOB)):
        match = _EEG_FILE.fullmatch(path.name)
        if match is None or path.parent.parent.name != f"sub-{match['subject']}":
            continue
        key = (match["subject"], int(match["run"]))
        if key in by_run:
            n_both += 1
            if match["fmt"] != "set":
                continue
        by_run[key] = path
    if not by_run:
        raise FileNotFoundError(
            f"bids_root={str(root)!r}: no {RECORDING_GLOB} files with a suffix in "
            f"{EEG_FORMATS}")
    if n_both:
        log.info("%d run(s) exist as both .set and .bdf; using the .set", n_both)
    return [Recording(subject, run, path, events_path(path))
            for (subject, run), path in sorted(by_run.items())]


def cut_windows(rec: Recording, cfg: WindowsConfig) -> RecordingWindows:
    """One window per valid trial of one recording.

    Raises
    ------
    UnusableRecording
        The recording yields no window, with the reason.
    """
    if not rec.events_path.is_file():
        raise UnusableRecording(f"no events file {rec.events_path.name}")
    dropped: Counter[str] = Counter()
    trials = parse_trials(read_events(rec.events_path), dropped)
    if not trials:
        raise UnusableRecording(f"no valid trial in the events ({counts_text(dropped)})")
    data_v, input_sfreq_hz = _read_eeg(rec.eeg_path, cfg)
    windows, kept = [], []
    for trial in trials:
        start = to_samples(trial.stim_onset_s + cfg.window_start_s, cfg.sfreq_hz)
        if start < 0:
            dropped["window before start of recording"] += 1
        elif start + cfg.n_times > data_v.shape[1]:
            dropped["window past end of recording"] += 1
        else:
            windows.append(data_v[:, start:start + cfg.n_times])
            kept.append(trial)
    if not kept:
        raise UnusableRecording(f"no valid trial ({counts_text(dropped)})")
    return RecordingWindows(np.stack(windows).astype(np.float32), kept, input_sfreq_hz,
                            dropped)


def counts_text(counts: Counter[str]) -> str:
    """``"3 no response, 1 no stimulus"``."""
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) or "no trials"


def _read_eeg(path: Path, cfg: WindowsConfig) -> tuple[np.ndarray, float]:
    """Volts (129, n_samples) in canonical channel order at the cache rate, and the input rate."""
    import mne

    reader = mne.io.read_raw_eeglab if path.suffix == ".set" else mne.io.read_raw_bdf
    raw = reader(path, preload=True, verbose="error")
    # A BDF can carry a trigger channel ("Status"); it is not EEG.
    stim = [name for name, kind in zip(raw.ch_names, raw.get_channel_types(), strict=True)
            if kind == "stim"]
    names = [name for name in raw.ch_names if name not in stim]
    if sorted(names) != sorted(CH_NAMES):
        raise UnusableRecording(_channel_problem(names))
    raw.pick(list(CH_NAMES))
    input_sfreq_hz = float(raw.info["sfreq"])
    if input_sfreq_hz != cfg.sfreq_hz:
        h_freq_hz = min(cfg.h_freq_hz, _MAX_H_FREQ_SHARE * min(input_sfreq_hz, cfg.sfreq_hz))
        if h_freq_hz <= cfg.l_freq_hz:
            raise UnusableRecording(f"input rate {input_sfreq_hz:g} Hz leaves no band above "
                                    f"l_freq_hz={cfg.l_freq_hz:g}")
        raw.filter(cfg.l_freq_hz, h_freq_hz, phase="zero", verbose="error")
        # Polyphase keeps sample timing exact; MNE's FFT method shifted an impulse by up to
        # 0.4 sample at 100 Hz, depending on where it lies in the recording.
        raw.resample(cfg.sfreq_hz, method="polyphase", verbose="error")
    return raw.get_data(), input_sfreq_hz


def _channel_problem(names: list[str]) -> str:
    expected = f"expected {N_CHANS} ({CH_NAMES[0]}..{CH_NAMES[-2]}, {CH_NAMES[-1]})"
    if len(names) != N_CHANS:
        return f"{len(names)} channels, {expected}"
    missing = sorted(set(CH_NAMES) - set(names))
    unexpected = sorted(set(names) - set(CH_NAMES))
    return f"channel names differ: missing {missing[:5]}, unexpected {unexpected[:5]}; {expected}"
