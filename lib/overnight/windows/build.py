"""Stage windows: every CCD recording of a BIDS root cut into one window cache."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from overnight import cli
from overnight.checks import as_path
from overnight.config import WindowsConfig
from overnight.windows.cache import create_cache
from overnight.windows.recordings import (
    Recording,
    RecordingWindows,
    UnusableRecording,
    cut_windows,
    find_recordings,
)

log = logging.getLogger(__name__)


def build_window_cache(bids_root: str | os.PathLike[str], out_path: str | os.PathLike[str],
                       cfg: WindowsConfig, progress: bool = True) -> dict[str, Any]:
    """Cut every CCD recording of a BIDS root into Challenge 1 windows, in one HDF5 file.

    The file is written atomically (a crash leaves the old cache or none) and grows one
    recording at a time. A recording that cannot be used is skipped, logged and listed
    in the ``skipped`` attribute; the build never stops on one bad file.

    Parameters
    ----------
    bids_root : str or PathLike
        The BIDS root.
    out_path : str or PathLike
        The ``.h5`` file to write.
    cfg : WindowsConfig
        Cache rate, window offsets and the band-pass used when resampling.
    progress : bool, default True
        Show a progress bar over recordings.

    Returns
    -------
    dict
        ``n_windows``, ``n_subjects``, ``n_recordings``, ``n_skipped``, ``seconds``,
        ``skipped`` (list of {path, reason}) and ``dropped_trials`` (counts by reason).

    Raises
    ------
    TypeError
        ``cfg`` is not a WindowsConfig.
    FileNotFoundError
        ``bids_root`` holds no CCD recording.
    RuntimeError
        No recording yielded a window (nothing is written).
    """
    if not isinstance(cfg, WindowsConfig):
        raise TypeError(f"cfg: expected a WindowsConfig, got {type(cfg).__name__}")
    t0 = time.perf_counter()
    root = as_path(bids_root, "bids_root").resolve()
    recordings = find_recordings(root)
    items: Iterable[Recording] = recordings
    if progress:
        items = cli.progress(recordings, total=len(recordings), desc="windows", unit="rec")
    sources: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    dropped: Counter[str] = Counter()
    with create_cache(out_path, cfg) as cache:
        for rec in items:
            rel_path = rec.eeg_path.relative_to(root).as_posix()
            try:
                cut = cut_windows(rec, cfg)
            except UnusableRecording as err:
                skipped.append(_skip(rel_path, str(err)))
                continue
            except Exception as err:  # one bad file must not stop the nightly run
                skipped.append(_skip(rel_path, f"{type(err).__name__}: {err}"))
                continue
            cache.append(_columns(rec, cut, recording_index=len(sources)))
            dropped.update(cut.dropped)
            sources.append({"path": rel_path, "subject": rec.subject, "run": rec.run,
                            "n_windows": len(cut.trials),
                            "input_sfreq_hz": cut.input_sfreq_hz, "format": rec.fmt})
        if not sources:
            reasons = [f"{s['path']}: {s['reason']}" for s in skipped[:5]]
            raise RuntimeError(f"bids_root={str(root)!r}: none of {len(skipped)} recording(s) "
                               f"yielded a window; first reasons: {reasons}")
        cache.finish(root, sources, skipped, dropped)
        n_windows = cache.n_windows
    return {"n_windows": n_windows, "n_subjects": len({s["subject"] for s in sources}),
            "n_recordings": len(sources), "n_skipped": len(skipped),
            "seconds": round(time.perf_counter() - t0, 3), "skipped": skipped,
            "dropped_trials": dict(sorted(dropped.items()))}


def _skip(rel_path: str, reason: str) -> dict[str, str]:
    log.warning("skipping %s: %s", rel_path, reason)
    return {"path": rel_path, "reason": reason}


def _columns(rec: Recording, cut: RecordingWindows, recording_index: int) -> dict[str, Any]:
    trials = cut.trials
    return {
        "eeg": cut.eeg,
        "rt": [t.rt_s for t in trials],
        "subject": [rec.subject] * len(trials),
        "run": [rec.run] * len(trials),
        "trial": [t.index for t in trials],
        "stim_onset_s": [t.stim_onset_s for t in trials],
        "response_onset_s": [t.response_onset_s for t in trials],
        "hand": [t.hand for t in trials],
        "correct": [t.correct for t in trials],
        "recording": [recording_index] * len(trials),
    }
