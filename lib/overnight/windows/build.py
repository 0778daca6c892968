"""Stage windows: every CCD recording of one or more BIDS roots cut into one window cache.

Recordings are read, filtered, resampled, checked and cut in a pool of worker processes;
the parent appends their windows in recording order, so the cache holds the same data
whatever the number of workers, and at most ``2 * workers`` recordings are in memory.
A recording that cannot be used is skipped with its reason; the stage never stops on one
bad file (a reader process that dies is replaced, and its recording skipped).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overnight import cli
from overnight.checks import as_path
from overnight.config import WindowsConfig
from overnight.hbn.channels import CH_NAMES
from overnight.windows.cache import create_cache
from overnight.windows.recordings import (
    Recording,
    RecordingWindows,
    UnusableRecording,
    cut_windows,
    find_recordings,
)

log = logging.getLogger(__name__)

REFERENCE_CHANNEL = CH_NAMES[-1]  # Cz: flat in many recordings, and that is normal


@dataclass(frozen=True)
class _Outcome:
    """What reading one recording gave: its windows, or why it was skipped."""

    windows: RecordingWindows | None
    reason: str | None


def build_window_cache(bids_roots: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                       out_path: str | os.PathLike[str], cfg: WindowsConfig,
                       progress: bool = True, enough_subjects: int | None = None
                       ) -> dict[str, Any]:
    """Cut every CCD recording of the BIDS roots into Challenge 1 windows, in one HDF5 file.

    The file is written atomically (a crash leaves the old cache or none). Subjects are
    unique across roots: a subject met again in a later root is skipped and listed as a
    duplicate, never counted twice. Every window records its release.

    Parameters
    ----------
    bids_roots : path or sequence of paths
        The BIDS root(s), one per release.
    out_path : str or PathLike
        The ``.h5`` file to write.
    cfg : WindowsConfig
        Cache rate, window offsets, trial logic, signal checks and ``workers``.
    progress : bool, default True
        Show a progress bar over recordings, with the windows so far.
    enough_subjects : int, optional
        Stop reading once this many subjects have given windows (the preflight's slice
        needs only a few); the recordings not read are neither used nor skipped.

    Returns
    -------
    dict
        ``n_windows``, ``n_subjects``, ``n_recordings``, ``n_skipped``, ``seconds``,
        ``workers``, ``skipped`` (list of {path, reason}), ``duplicates`` and
        ``dropped_trials`` (counts by reason).

    Raises
    ------
    TypeError
        ``cfg`` is not a WindowsConfig.
    FileNotFoundError
        A root holds no CCD recording.
    RuntimeError
        No recording yielded a window (nothing is written).
    """
    if not isinstance(cfg, WindowsConfig):
        raise TypeError(f"cfg: expected a WindowsConfig, got {type(cfg).__name__}")
    t0 = time.perf_counter()
    roots = _roots(bids_roots)
    recordings, duplicates = _unique_recordings(roots)
    workers = min(cfg.workers or os.cpu_count() or 1, max(1, len(recordings)))
    sources: list[dict[str, Any]] = []
    skipped = [_skip(d["path"], d["reason"]) for d in duplicates]
    dropped: Counter[str] = Counter()
    subjects: set[str] = set()
    reads = _read_all(recordings, cfg, workers)
    with create_cache(out_path, cfg) as cache, contextlib.closing(reads):
        # closing: an early stop or an error shuts the worker pool down now, not at exit
        outcomes = reads
        if progress:
            outcomes = cli.progress(reads, total=len(recordings), desc="windows",
                                    unit="rec", status=lambda: f"{cache.n_windows:,} windows")
        for rec, outcome in outcomes:
            if (enough_subjects is not None and len(subjects) >= enough_subjects
                    and rec.subject not in subjects):
                break
            if outcome.windows is None:
                skipped.append(_skip(_label(rec), str(outcome.reason)))
                continue
            cache.append(_columns(rec, outcome.windows, recording_index=len(sources)))
            dropped.update(outcome.windows.dropped)
            subjects.add(rec.subject)
            sources.append(_source(rec, outcome.windows))
        if not sources:
            reasons = [f"{s['path']}: {s['reason']}" for s in skipped[:5]]
            raise RuntimeError(f"bids_roots={[str(r) for r in roots]}: none of "
                               f"{len(skipped)} recording(s) yielded a window; first "
                               f"reasons: {reasons}")
        cache.finish(roots, sources, skipped, dropped, duplicates)
        n_windows = cache.n_windows
    return {"n_windows": n_windows, "n_subjects": len(subjects),
            "n_recordings": len(sources), "n_skipped": len(skipped), "workers": workers,
            "seconds": round(time.perf_counter() - t0, 3), "skipped": skipped,
            "duplicates": duplicates, "dropped_trials": dict(sorted(dropped.items()))}


def _roots(bids_roots: Any) -> list[Path]:
    if isinstance(bids_roots, (str, os.PathLike)):
        bids_roots = [bids_roots]
    roots = [as_path(root, "bids_roots").resolve() for root in bids_roots]
    if not roots:
        raise ValueError("bids_roots: expected at least one BIDS root")
    repeated = sorted({str(root) for root in roots if roots.count(root) > 1})
    if repeated:
        raise ValueError(f"bids_roots: {repeated} given more than once; each release once")
    return roots


def _unique_recordings(roots: list[Path]) -> tuple[list[Recording], list[dict[str, str]]]:
    """Every root's recordings; a subject already found in an earlier root is a duplicate."""
    recordings: list[Recording] = []
    first_root: dict[str, Path] = {}
    duplicates = []
    for root in roots:
        for rec in find_recordings(root):
            seen = first_root.setdefault(rec.subject, root)
            if seen == root:
                recordings.append(rec)
            else:
                duplicates.append({"path": _label(rec), "subject": rec.subject,
                                   "reason": f"duplicate: subject {rec.subject} is also in "
                                             f"{seen}, whose recordings are used"})
    return recordings, duplicates


def _read_all(recordings: list[Recording], cfg: WindowsConfig,
              workers: int) -> Iterator[tuple[Recording, _Outcome]]:
    """Every recording's outcome, in order, read by ``workers`` processes (in this one when
    ``workers`` is 1)."""
    if workers == 1:
        for rec in recordings:
            yield rec, _read_one(rec, cfg)
        return
    next_index = 0
    while next_index < len(recordings):
        pool = _pool(workers)
        running: deque[tuple[int, Future[_Outcome]]] = deque()
        try:
            while next_index < len(recordings) or running:
                while next_index < len(recordings) and len(running) < 2 * workers:
                    future = pool.submit(_read_one, recordings[next_index], cfg)
                    running.append((next_index, future))  # at most 2 * workers in memory
                    next_index += 1
                i, future = running[0]
                outcome = future.result()
                running.popleft()
                yield recordings[i], outcome
        except BrokenProcessPool:
            # A reader died (a crash inside a file reader): which file did it is unknown,
            # so each one that did not finish is read again alone; then a new pool goes on.
            for i, future in running:
                finished = future.done() and not future.cancelled() and not future.exception()
                yield recordings[i], (future.result() if finished
                                      else _isolated(recordings[i], cfg))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _isolated(rec: Recording, cfg: WindowsConfig) -> _Outcome:
    """Read one recording in a process of its own; its death skips the recording, unless a
    worker cannot even start (then no file is to blame)."""
    pool = _pool(1)
    try:
        return pool.submit(_read_one, rec, cfg).result()
    except BrokenProcessPool as exc:
        if not _workers_start():
            raise RuntimeError("the window stage's worker processes die before doing "
                               "anything; run it with --set windows.workers=1 to see why"
                               ) from exc
        return _Outcome(None, "the reader process died reading this file (a crash in the "
                              "file reader)")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _workers_start() -> bool:
    """Whether a worker process starts and answers a trivial task."""
    pool = _pool(1)
    try:
        return pool.submit(int).result() == 0
    except BrokenProcessPool:
        return False
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn: no fork of a parent that holds an open HDF5 file and a progress-bar thread
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _read_one(rec: Recording, cfg: WindowsConfig) -> _Outcome:
    """Read and cut one recording; any failure becomes a reason (runs in a worker)."""
    try:
        return _Outcome(cut_windows(rec, cfg), None)
    except UnusableRecording as err:
        return _Outcome(None, str(err))
    except Exception as err:  # one bad file must not stop the nightly run
        return _Outcome(None, f"{type(err).__name__}: {err}")


def _label(rec: Recording) -> str:
    """The recording as the report names it: its path below its root, and the root."""
    return f"{rec.root.name}/{rec.eeg_path.relative_to(rec.root).as_posix()}"


def _skip(label: str, reason: str) -> dict[str, str]:
    log.warning("skipping %s: %s", label, reason)
    return {"path": label, "reason": reason}


def _source(rec: Recording, cut: RecordingWindows) -> dict[str, Any]:
    flat = [c for c in cut.signal.flat_channels if c != REFERENCE_CHANNEL]
    return {"path": _label(rec), "subject": rec.subject, "run": rec.run,
            "release": rec.release, "n_windows": len(cut.trials),
            "input_sfreq_hz": cut.input_sfreq_hz, "format": rec.fmt,
            "reference_flat": REFERENCE_CHANNEL in cut.signal.flat_channels,
            "flat_channels": flat, "noisy_channels": cut.signal.noisy_channels,
            "median_abs_v": cut.signal.median_abs_v}


def _columns(rec: Recording, cut: RecordingWindows, recording_index: int) -> dict[str, Any]:
    trials = cut.trials
    return {
        "eeg": cut.eeg, "eeg_before": cut.before, "eeg_after": cut.after,
        "rt": [t.rt_s for t in trials],
        "subject": [rec.subject] * len(trials),
        "release": [rec.release] * len(trials),
        "run": [rec.run] * len(trials),
        "trial": [t.index for t in trials],
        "stim_onset_s": [t.stim_onset_s for t in trials],
        "response_onset_s": [t.response_onset_s for t in trials],
        "hand": [t.hand for t in trials],
        "correct": [t.correct for t in trials],
        "recording": [recording_index] * len(trials),
    }
