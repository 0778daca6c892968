"""One CCD recording: find it in a BIDS root, read it with MNE, check its signal, cut its
trials into windows.

The checks keep bad signal out of the cache, each with its reason: a recording whose
channels are (nearly) all flat, or whose amplitude is not that of EEG in volts, is skipped;
a window with a NaN/Inf sample or no signal at all is dropped; single flat or noisy channels
are counted per recording (the flat ``Cz`` reference is normal) and kept.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from overnight.checks import as_path
from overnight.config import EEG_FORMATS, WindowsConfig
from overnight.hbn.bids import RECORDING_GLOB, TASK, events_path, read_events, read_participants
from overnight.hbn.channels import CH_NAMES, N_CHANS
from overnight.hbn.events import Trial, parse_trials
from overnight.hbn.releases import release_in_name
from overnight.units import to_samples

log = logging.getLogger(__name__)

_EEG_FILE = re.compile(rf"sub-(?P<subject>[^_/]+)_task-{TASK}_run-(?P<run>\d+)_eeg\."
                       rf"(?P<fmt>{'|'.join(EEG_FORMATS)})")
# Band-pass high edge when resampling, as a share of the lower rate: 0.45 * rate keeps the
# edge and its transition band below that rate's Nyquist (0.5 * rate).
_MAX_H_FREQ_SHARE = 0.45
# Why a window is dropped by the signal checks.
NON_FINITE_WINDOW = "window with NaN/Inf samples"
FLAT_WINDOW = "window without signal (every channel flat)"


@dataclass(frozen=True)
class Recording:
    """One CCD run in a BIDS root."""

    subject: str  # without the ``sub-`` prefix
    run: int
    eeg_path: Path
    events_path: Path
    root: Path  # the BIDS root it was found in
    release: str  # "R1".."R11" (participants.tsv, else the root's name), "" when unknown

    @property
    def fmt(self) -> str:
        """File format: ``"set"`` or ``"bdf"``."""
        return self.eeg_path.suffix.lstrip(".")


class UnusableRecording(Exception):
    """A recording that cannot be used, for a reason worth reporting as is."""


@dataclass(frozen=True)
class SignalCheck:
    """What the checks found in one recording (at the cache rate)."""

    flat_channels: list[str] = field(default_factory=list)  # std below flat_channel_std_v
    noisy_channels: list[str] = field(default_factory=list)  # std far above the median's
    median_abs_v: float = 0.0  # median |x| of the live channels


@dataclass(frozen=True)
class RecordingWindows:
    """The windows of one recording, one per kept trial."""

    eeg: np.ndarray  # (n, 129, n_times) float32 volts
    trials: list[Trial]
    input_sfreq_hz: float
    dropped: Counter[str]
    signal: SignalCheck
    # (n, 129, margin) float32 volts before and after each window; past either end of the
    # recording, its first or last sample repeated
    before: np.ndarray
    after: np.ndarray


def find_recordings(bids_root: str | os.PathLike[str]) -> list[Recording]:
    """Every CCD recording under ``bids_root``, sorted by subject then run.

    Where one run exists as both ``.set`` and ``.bdf``, the ``.set`` is used (logged once).
    A recording's release comes from ``participants.tsv`` (``release_number``), else from
    the root's folder name (``R1_L100``), else it is unknown ("").

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
    participants = read_participants(root)
    default_release = release_in_name(root.resolve().name)
    return [Recording(subject, run, path, events_path(path), root,
                      (participants.get(subject, {}).get("release_number") or "").strip()
                      or default_release)
            for (subject, run), path in sorted(by_run.items())]


def cut_windows(rec: Recording, cfg: WindowsConfig) -> RecordingWindows:
    """One window per valid trial of one recording, with clean signal.

    Raises
    ------
    UnusableRecording
        The recording yields no window, with the reason.
    """
    if not rec.events_path.is_file():
        raise UnusableRecording(f"no events file {rec.events_path.name}")
    dropped: Counter[str] = Counter()
    trials = parse_trials(read_events(rec.events_path), dropped, cfg.keep_last_trial)
    if not trials:
        raise UnusableRecording(f"no valid trial in the events ({counts_text(dropped)})")
    data_v, input_sfreq_hz = _read_eeg(rec.eeg_path, cfg)
    signal = check_signal(data_v, cfg)
    margin = cfg.margin_samples
    # The margins may reach past the recording: edge samples stand in, so that a margin
    # never costs an official window.
    padded = np.pad(data_v, ((0, 0), (margin, margin)), mode="edge")
    windows, kept = [], []
    for trial in trials:
        start = to_samples(trial.stim_onset_s + cfg.window_start_s, cfg.sfreq_hz)
        window = data_v[:, max(start, 0):start + cfg.n_times]
        if start < 0:
            dropped["window before start of recording"] += 1
        elif start + cfg.n_times > data_v.shape[1]:
            dropped["window past end of recording"] += 1
        elif not np.isfinite(window).all():
            dropped[NON_FINITE_WINDOW] += 1
        elif (window.std(axis=1) < cfg.flat_channel_std_v).all():
            dropped[FLAT_WINDOW] += 1
        else:
            windows.append(padded[:, start:start + cfg.n_times + 2 * margin])
            kept.append(trial)
    if not kept:
        raise UnusableRecording(f"no valid trial ({counts_text(dropped)})")
    wide = np.stack(windows).astype(np.float32)  # (n, 129, margin + n_times + margin)
    return RecordingWindows(wide[..., margin:margin + cfg.n_times], kept, input_sfreq_hz,
                            dropped, signal, before=wide[..., :margin],
                            after=wide[..., margin + cfg.n_times:])


def check_signal(data_v: np.ndarray, cfg: WindowsConfig) -> SignalCheck:
    """Flat and noisy channels and the amplitude of one recording (129, n_samples) in volts.

    Raises
    ------
    UnusableRecording
        Too many channels are flat, or the amplitude is not that of EEG in volts; the
        reason says what the data looks like.
    """
    with np.errstate(invalid="ignore"):
        std_v = np.nanstd(np.where(np.isfinite(data_v), data_v, np.nan), axis=1)
    flat = ~(std_v >= cfg.flat_channel_std_v)  # an all-NaN channel is flat too
    if flat.mean() > cfg.max_flat_share:
        raise UnusableRecording(
            f"{int(flat.sum())} of {len(flat)} channels flat (std < "
            f"{cfg.flat_channel_std_v:g} V): no EEG signal")
    live = data_v[~flat]
    live = live[np.isfinite(live)]
    if live.size == 0:
        raise UnusableRecording(f"every channel flat (std < {cfg.flat_channel_std_v:g} V) or "
                                "not finite: no EEG signal")
    median_abs_v = float(np.median(np.abs(live)))
    if not cfg.min_median_abs_v <= median_abs_v <= cfg.max_median_abs_v:
        raise UnusableRecording(f"median |x| = {median_abs_v:.3g}: {_unit_guess(median_abs_v)}; "
                                f"EEG in volts lies in {cfg.min_median_abs_v:g}.."
                                f"{cfg.max_median_abs_v:g}")
    noisy = std_v > cfg.noisy_channel_ratio * np.median(std_v[~flat])
    names = np.asarray(CH_NAMES)
    return SignalCheck(flat_channels=names[flat].tolist(), noisy_channels=names[noisy].tolist(),
                       median_abs_v=median_abs_v)


def _unit_guess(median_abs_v: float) -> str:
    """What an implausible amplitude suggests, for the skip reason."""
    if median_abs_v >= 0.1:
        return "microvolts? (EEG in uV read as volts)"
    if median_abs_v > 1e-3:
        return "millivolts? (EEG in mV read as volts)"
    return "scaled down? (volts divided by 1e3 or more)"


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
        n_bad = int((~np.isfinite(raw.get_data())).sum())
        if n_bad:
            raise UnusableRecording(f"{n_bad} NaN/Inf samples at {input_sfreq_hz:g} Hz: "
                                    "filtering to the cache rate would spread them over the "
                                    "whole recording")
        h_freq_hz = min(cfg.h_freq_hz, _MAX_H_FREQ_SHARE * min(input_sfreq_hz, cfg.sfreq_hz))
        if h_freq_hz <= cfg.l_freq_hz:
            raise UnusableRecording(f"input rate {input_sfreq_hz:g} Hz leaves no band above "
                                    f"l_freq_hz={cfg.l_freq_hz:g}")
        # Polyphase keeps sample timing exact (MNE's FFT method shifted an impulse by up to
        # 0.4 sample at 100 Hz, depending on where it lies in the recording), and its own
        # anti-aliasing low-pass comes first; the band-pass then runs at the lower rate,
        # at half the cost of filtering the 500 Hz original.
        raw.resample(cfg.sfreq_hz, method="polyphase", verbose="error")
        raw.filter(cfg.l_freq_hz, h_freq_hz, phase="zero", verbose="error")
    return raw.get_data(), input_sfreq_hz


def _channel_problem(names: list[str]) -> str:
    expected = f"expected {N_CHANS} ({CH_NAMES[0]}..{CH_NAMES[-2]}, {CH_NAMES[-1]})"
    if len(names) != N_CHANS:
        return f"{len(names)} channels, {expected}"
    missing = sorted(set(CH_NAMES) - set(names))
    unexpected = sorted(set(names) - set(CH_NAMES))
    return f"channel names differ: missing {missing[:5]}, unexpected {unexpected[:5]}; {expected}"
