"""The champion record and the install: ``champion.json`` and the swap of the submission.

The submission folder holds ``submission.py``, the weights it loads, ``submission.zip``
(the flat zip to upload) and ``champion.json`` (the model, its score, the date, the sha256
of every file, and earlier champions). Nothing is replaced before the new submission has
been imported in a fresh Python process, the way the scorer does it, and its predictions
match the evaluation's.

The swap is one step that a kill cannot split. The new files and their ``champion.json``
are staged complete in ``.pending/``; writing the journal (``.install.json``) is the commit
point; then each file is moved into place, ``champion.json`` last, and the journal removed.
A kill before the journal leaves the old champion (the staged files are discarded at the
next start); a kill after it is finished at the next start (``finish_interrupted_install``:
the moves that had not happened yet are made). Weights files have content-addressed names,
so ``submission.py`` always points at a weights file that exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from overnight import atomic
from overnight.champion.submission import (
    SUBMISSION_FILE,
    WEIGHTS_PREFIX,
    ZIP_FILE,
    build_submission,
    check_in_fresh_process,
    predict_with_submission,
)
from overnight.config import WindowsConfig
from overnight.hbn.channels import N_CHANS
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split

log = logging.getLogger(__name__)

CHAMPION_FILE = "champion.json"
JOURNAL_FILE = ".install.json"
PENDING_DIR = ".pending"
LOCK_FILE = ".install.lock"  # one install, recovery or verify at a time
_OLD_STAGING_PREFIX = ".staging-"  # what installs before the journal left when killed
VERIFY_WINDOWS = 256  # validation windows make verify predicts, at most
# Validation windows a promotion's fresh-process check predicts, at most, spread evenly over
# the validation set: a second pass over all of them cost compare 13 s of 74 s at 8,219
# windows on 2 cores, and a submission that reproduces 1,024 windows of every subject
# reproduces the rest.
PROMOTION_CHECK_WINDOWS = 1024


def read_champion(submission_dir: Path) -> dict[str, Any] | None:
    """The champion record, or None when there is no champion yet."""
    path = submission_dir / CHAMPION_FILE
    return json.loads(path.read_text()) if path.exists() else None


def verify_files(submission_dir: Path, record: dict[str, Any]) -> str | None:
    """None when every file in the record is there with its recorded sha256, else why not."""
    for name, digest in record.get("files", {}).items():
        path = submission_dir / name
        if not path.exists():
            return f"{name} is missing"
        if atomic.sha256_file(path) != digest:
            return f"{name} does not match its sha256 in {CHAMPION_FILE}"
    return None


def integrity_fix(record: dict[str, Any]) -> str:
    """The commands that mend a submission folder that no longer matches its record."""
    source = record.get("source")
    restore = (f"`make rollback ROLLBACK_MODEL={source}` re-installs the recorded champion "
               f"({record.get('model')}) from its model folder, or "
               if source and Path(source, "model.json").is_file() else "")
    return (f"{restore}`make rollback` makes the baseline of the night in WORK champion; "
            "`make verify` then checks the folder")


def verify_submission(submission_dir: Path, windows_path: Path | None = None,
                      split_path: Path | None = None) -> str | None:
    """Check the submission folder as a night would before trusting it; None when it passes,
    else what is wrong and how to mend it.

    An interrupted install is finished or discarded first; then every file is checked
    against its sha256 in ``champion.json``, and the promotion check runs: a fresh process
    imports the submission as the scorer does, predicts the validation windows of
    ``windows_path``/``split_path`` (else noise windows) as this process does, and answers
    the input probes and Challenge 2.
    """
    recover_install(submission_dir)
    champion = read_champion(submission_dir)
    if champion is None:
        return f"no {CHAMPION_FILE} in {submission_dir}: there is no champion to verify"
    problem = verify_files(submission_dir, champion)
    if problem:
        return f"{problem}. To mend: {integrity_fix(champion)}"
    log.info("%s: every file matches its sha256 in %s (%s, since %s)", submission_dir,
             CHAMPION_FILE, champion.get("model"), champion.get("date"))
    windows, sfreq_hz, source = _verify_windows(windows_path, split_path)
    try:
        expected = predict_with_submission(submission_dir, windows, sfreq_hz)
        check_in_fresh_process(submission_dir, windows, expected, sfreq_hz)
    except Exception as exc:  # any failure is the answer, not a crash
        return f"the submission fails the promotion check: {type(exc).__name__}: {exc}"
    log.info("the submission passes the promotion check on %d %s", len(windows), source)
    return None


def _verify_windows(windows_path: Path | None,
                    split_path: Path | None) -> tuple[np.ndarray, float, str]:
    if windows_path is not None and split_path is not None and windows_path.is_file() \
            and split_path.is_file():
        val = load_windows(windows_path, read_split(split_path)["val"])
        return val.eeg[:VERIFY_WINDOWS], val.sfreq_hz, f"validation windows of {windows_path}"
    cfg = WindowsConfig()
    noise = np.random.default_rng(0).normal(0.0, 1e-5, (16, N_CHANS, cfg.n_times))
    return noise.astype(np.float32), cfg.sfreq_hz, "noise windows (no window cache given)"


def install(model_dir: Path, submission_dir: Path, check_windows: np.ndarray,
            expected_s: np.ndarray, sfreq_hz: float, record: dict[str, Any],
            max_ms_per_window: float | None = None) -> dict[str, Any]:
    """Build, check in a fresh process as the scorer runs it, then swap the submission in
    and record the champion.

    ``record`` holds the new champion's details (model, nrmse, reason, ...); the file
    hashes, the date, the check (``scorer_check``: where it ran, the time per window) and
    the list of previous champions are added here. Returns the full record written to
    ``champion.json``. The check predicts up to ``PROMOTION_CHECK_WINDOWS`` of
    ``check_windows`` (evenly spread) against ``expected_s``. A submission slower than
    ``max_ms_per_window`` one window at a time on the CPU fails the check.
    """
    pick = evenly_spread(len(check_windows), PROMOTION_CHECK_WINDOWS)
    check_windows, expected_s = check_windows[pick], np.asarray(expected_s)[pick]
    submission_dir.mkdir(parents=True, exist_ok=True)
    with install_lock(submission_dir):
        return _install(model_dir, submission_dir, check_windows, expected_s, sfreq_hz, record,
                        max_ms_per_window)


def evenly_spread(n: int, at_most: int) -> np.ndarray:
    """Up to ``at_most`` indices into ``n`` items, ascending, evenly spaced, first and last
    included."""
    return np.unique(np.linspace(0, n - 1, min(n, at_most)).round().astype(np.int64))


@contextlib.contextmanager
def install_lock(submission_dir: Path) -> Iterator[None]:
    """Hold the submission folder's lock: an install, the recovery of one, and make verify
    never interleave (a verify must not discard the staged files of a night's install)."""
    fd = os.open(submission_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _install(model_dir: Path, submission_dir: Path, check_windows: np.ndarray,
             expected_s: np.ndarray, sfreq_hz: float, record: dict[str, Any],
             max_ms_per_window: float | None) -> dict[str, Any]:
    finish_interrupted_install(submission_dir)
    pending = submission_dir / PENDING_DIR
    try:
        files = build_submission(model_dir, pending)
        check = check_in_fresh_process(pending, check_windows, expected_s, sfreq_hz)
        _check_speed(check, max_ms_per_window)
    except Exception as exc:  # the old champion stays; nothing of the new one is left
        shutil.rmtree(pending, ignore_errors=True)
        if atomic.is_disk_full(exc):
            # the weights twice (the file and the zip) and a little for the code
            needed = 2 * (model_dir / "model.pt").stat().st_size + 1_000_000
            target = getattr(exc, "filename", None) or pending
            raise atomic.disk_full_error(target, exc, needed) from exc
        raise
    full = {**record, "files": files, "scorer_check": check, "date": time.strftime("%Y-%m-%d"),
            "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "weights_sha256": atomic.sha256_file(model_dir / "model.pt"),
            "previous": _history(read_champion(submission_dir))}
    atomic.write_json(pending / CHAMPION_FILE, full)
    atomic.sync_folder(pending)
    weights_name = next(n for n in files if n.startswith(WEIGHTS_PREFIX))
    # The commit point. Order matters: the new weights first (a new name), then the zip,
    # then submission.py, which switches to them; champion.json records it last.
    atomic.write_json(submission_dir / JOURNAL_FILE,
                      {"moves": [weights_name, ZIP_FILE, SUBMISSION_FILE, CHAMPION_FILE],
                       "weights": weights_name})
    _roll_forward(submission_dir)  # checks every file against the new record
    return full


def _check_speed(check: dict[str, Any], max_ms_per_window: float | None) -> None:
    speed = check["ms_per_window"]
    ms = max(speed["cpu_1_thread"], speed["cpu_default_threads"])
    if max_ms_per_window is not None and ms > max_ms_per_window:
        raise RuntimeError(f"the submission takes {ms:.1f} ms per window one at a time on the "
                           f"CPU ({check['where']}), over [compare] max_ms_per_window = "
                           f"{max_ms_per_window:g} ms")


def recover_install(submission_dir: Path) -> str | None:
    """``finish_interrupted_install`` under the install lock, logged; what it did."""
    if not submission_dir.is_dir():
        return None
    with install_lock(submission_dir):
        recovered = finish_interrupted_install(submission_dir)
    if recovered:
        log.warning("%s: %s", submission_dir, recovered)
    return recovered


def finish_interrupted_install(submission_dir: Path) -> str | None:
    """Complete an install a kill cut after its commit point, or discard one cut before it;
    say which (None when there was nothing to do). Call it holding ``install_lock``."""
    if (submission_dir / JOURNAL_FILE).exists():
        _roll_forward(submission_dir)
        return ("finished an install that was interrupted after its commit point: "
                f"{CHAMPION_FILE} and its files are the new champion's")
    leftovers = [p for p in submission_dir.glob(".*") if p.is_dir()
                 and (p.name == PENDING_DIR or p.name.startswith(_OLD_STAGING_PREFIX))]
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    if leftovers:
        return ("discarded an install that was interrupted before its commit point: the "
                "champion is unchanged")
    return None


def _roll_forward(submission_dir: Path) -> None:
    """Make the journal's moves that have not happened yet, check the result against the
    new champion.json, then drop the old weights, the staging folder and the journal.

    Raises
    ------
    RuntimeError
        A file is not what the new record says (the journal stays, nothing is removed).
    """
    journal = json.loads((submission_dir / JOURNAL_FILE).read_text())
    pending = submission_dir / PENDING_DIR
    for name in journal["moves"]:
        staged = pending / name
        if staged.exists():  # else moved before the kill
            staged.replace(submission_dir / name)
    atomic.sync_folder(submission_dir)
    champion = read_champion(submission_dir)
    problem = verify_files(submission_dir, champion) if champion else f"no {CHAMPION_FILE}"
    if problem:
        raise RuntimeError(f"{submission_dir}: finishing the install journaled in "
                           f"{JOURNAL_FILE}: {problem}; nothing was removed")
    _remove_unreferenced_weights(submission_dir, journal["weights"])
    shutil.rmtree(pending, ignore_errors=True)  # before the journal: a kill between the
    (submission_dir / JOURNAL_FILE).unlink()    # two still finds the journal


def _history(previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    if previous is None:
        return []
    older = previous.get("previous", [])
    entry = {k: v for k, v in previous.items() if k != "previous"}
    return [entry, *older]


def _remove_unreferenced_weights(submission_dir: Path, keep: str) -> None:
    for path in submission_dir.glob(f"{WEIGHTS_PREFIX}*.pt"):
        if path.name != keep:
            path.unlink()
