"""The study: where it is stored, what it is called, and how it survives kills.

**Storage.** On one host the study is an Optuna journal file (``JournalStorage`` over a
``JournalFileBackend``), one per study, in ``<SEARCH_DIR>/<study>/journal.log``, beside the
night folders. Optuna's FAQ "would never recommend SQLite3 for parallel optimization" (no
``SELECT ... FOR UPDATE``, "database is locked" under concurrent writers, no locking on
NFS) and points to ``JournalFileBackend`` as the file-based storage for it; its tutorial on
parallelisation says the journal's file locks are safe for several processes on one host,
and recommends an RDB server (``RDBStorage``) for several nodes.
``SEARCH_STORAGE=postgresql://user:password@host/db`` (read from the environment, so the
password never reaches a command line or a log) puts the study in PostgreSQL, and workers
on any host join it.

**Name.** A study is named by a hash of the data its objective sees (the window cache's
training and tune windows, the split) and of its space (``space.space_signature``: a new
searched model changes the families): the next night continues it while both are the same,
and a new cache, a new split or a new family opens a new study.

**Kills.** A trial whose worker died stays "running" in the storage. With the journal, every
worker holds a shared lock on ``workers.lock`` while it runs; whoever takes that lock
exclusively knows that no worker runs, so every trial still running was left by a dead one
(killed, or the machine stopped): it is failed and requeued once more with the same values,
and its training resumes from its checkpoint. In PostgreSQL, Optuna's heartbeat does the
same across hosts: a trial silent for twice ``[search] heartbeat_s`` is failed and requeued
(``RetryHeartbeatStaleTrialCallback``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from overnight.config import SEARCH_STORAGE_ENV, Config, SearchConfig
from overnight.search import space
from overnight.windows.cache import open_cache
from overnight.windows.split import read_split

log = logging.getLogger(__name__)

STORAGE_SCHEMES = ("postgresql", "postgresql+psycopg")  # SQLAlchemy's names for psycopg 3
JOURNAL_FILE = "journal.log"
WORKERS_LOCK = "workers.lock"
# A trial requeued this often (killed or stopped twice) is not retried again: it is likely
# the one that kills its worker (out of memory), or too slow to ever finish.
MAX_RETRIES = 2
_EEG_SAMPLE_WINDOWS = 64  # windows whose samples enter the data hash


@dataclasses.dataclass(frozen=True)
class StudyPlace:
    """Where one study lives: its name, its folder (journal, lock, trials) and, when it is
    shared by several hosts, its database URL."""

    name: str
    folder: Path
    url: str | None = None

    @property
    def journal(self) -> Path:
        return self.folder / JOURNAL_FILE

    @property
    def lock(self) -> Path:
        return self.folder / WORKERS_LOCK

    def trial_dir(self, number: int) -> Path:
        """The training folder of trial ``number`` (a retried trial trains in its
        original's, so it resumes from its checkpoint)."""
        return self.folder / "trials" / f"{number:05d}"

    def storage_text(self) -> str:
        """Where the study is stored, for logs and the report: never a password."""
        return redact(self.url) if self.url else f"journal {self.journal}"


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def storage_url(environ: dict[str, str] | None = None) -> str | None:
    """``SEARCH_STORAGE`` from the environment, checked; None when unset or empty.

    Raises
    ------
    ValueError
        A URL of another kind than PostgreSQL.
    """
    url = (os.environ if environ is None else environ).get(SEARCH_STORAGE_ENV, "").strip()
    if not url:
        return None
    scheme = urlsplit(url).scheme
    if scheme not in STORAGE_SCHEMES:
        raise ValueError(f"{SEARCH_STORAGE_ENV}={redact(url)!r}: expected a PostgreSQL URL "
                         f"({' or '.join(s + '://' for s in STORAGE_SCHEMES)}user:password@"
                         "host/database); leave it empty for the journal file beside the "
                         "nights")
    return url


def data_fingerprint(windows_path: Path, split_path: Path) -> dict[str, Any]:
    """What the objective sees, hashed: the window cache's layout, the identity, target and
    a sample of the samples of every training and tune window, and the split's subjects.
    The validation windows are not read (their subjects' ids, from the split, are hashed).

    Returns
    -------
    dict
        ``sha256`` (hex), ``n_windows`` (training and tune) and ``subjects`` (per side).
    """
    split = read_split(split_path)
    digest = hashlib.sha256()
    with open_cache(windows_path) as cache:
        subjects = cache.subjects()
        rows = np.flatnonzero(np.isin(subjects, split["train"] + split["tune"]))
        layout = {"sfreq_hz": cache.sfreq_hz, "window_start_s": cache.window_start_s,
                  "n_chans": cache.n_chans, "n_times": cache.n_times,
                  "margin_samples": cache.margin_samples}
        digest.update(json.dumps(layout, sort_keys=True).encode())
        for name in ("subject", "release", "run", "trial", "rt", "stim_onset_s"):
            column = cache.column(name)[rows]
            digest.update(name.encode())
            digest.update("\n".join(map(str, column.tolist())).encode())
        sample = rows[np.linspace(0, len(rows) - 1, min(len(rows), _EEG_SAMPLE_WINDOWS))
                      .astype(int)]
        digest.update(np.ascontiguousarray(cache.read_eeg(np.unique(sample))).tobytes())
    for side in ("train", "tune", "val"):
        digest.update(f"{side}:{','.join(sorted(split[side]))}".encode())
    return {"sha256": digest.hexdigest(), "n_windows": len(rows),
            "subjects": {side: len(split[side]) for side in ("train", "tune", "val")}}


def study_name(fingerprint: dict[str, Any], space_signature: str) -> str:
    """``rt-<first 16 hex digits of the data hash>-<the space's signature>``."""
    return f"rt-{fingerprint['sha256'][:16]}-{space_signature}"


def night_study_name(windows_path: Path, split_path: Path, config: Config
                     ) -> tuple[str, dict[str, Any]]:
    """The name of the study of this data and the night's search space, and the data's
    fingerprint (``data_fingerprint``)."""
    fingerprint = data_fingerprint(windows_path, split_path)
    return study_name(fingerprint, space.space_signature(space.families(config))), fingerprint


def open_study(place: StudyPlace, cfg: SearchConfig, seed: int) -> optuna.Study:
    """Create the study, or load it when it exists: TPE, the median pruner on the tune NRMSE
    per epoch, minimised.

    Parameters
    ----------
    place : StudyPlace
        Where the study lives.
    cfg : SearchConfig
        The sampler's and the pruner's settings.
    seed : int
        The sampler's seed: every worker (and every start of one) needs its own, or two
        would draw the same values.
    """
    # Optuna marks its retry callback and its stale-trial handling experimental; we use both
    # as documented, so their warnings would say nothing to a reader of the night's log.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    sampler = optuna.samplers.TPESampler(n_startup_trials=cfg.startup_trials, seed=seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner_startup_trials,
                                         n_warmup_steps=cfg.pruner_warmup_epochs)
    return optuna.create_study(storage=_storage(place, cfg), sampler=sampler, pruner=pruner,
                               study_name=place.name, direction="minimize",
                               load_if_exists=True)


def _storage(place: StudyPlace, cfg: SearchConfig) -> optuna.storages.BaseStorage:
    if place.url:
        return optuna.storages.RDBStorage(
            place.url, engine_kwargs={"pool_pre_ping": True},
            heartbeat_interval=cfg.heartbeat_s, grace_period=2 * cfg.heartbeat_s,
            heartbeat_stale_trial_callback=lambda study, trial: requeue(
                study, trial, f"no heartbeat from its worker for {2 * cfg.heartbeat_s} s"))
    place.folder.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(place.journal)))


def repair_journal(place: StudyPlace) -> int:
    """Cut a half-written last line off the journal (a worker killed while appending):
    Optuna cannot read a journal in which one is followed by more lines. Run it while no
    worker runs. Returns the bytes removed."""
    path = place.journal
    if place.url or not path.exists() or path.stat().st_size == 0:
        return 0
    with open(path, "rb+") as fh:
        data = fh.read()
        if data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("%s: removed a half-written last record (%d bytes) left by a killed worker",
                path, len(data) - keep)
    return len(data) - keep


@contextlib.contextmanager
def worker_lock(place: StudyPlace) -> Iterator[None]:
    """Hold the study's workers lock, shared, for as long as a worker runs."""
    place.folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(place.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock, as does the death of the process


@contextlib.contextmanager
def no_worker_running(place: StudyPlace) -> Iterator[bool]:
    """Yield True while holding the workers lock exclusively (no worker of this study runs
    on a file system this lock covers), False when a worker holds it."""
    place.folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(place.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def reap_dead_trials(study: optuna.Study, place: StudyPlace, why: str) -> list[int]:
    """Fail the trials whose worker is dead and requeue each with its values; return their
    numbers.

    With the journal: only when no worker holds the workers lock (then every running trial
    is a dead worker's). With PostgreSQL: the trials whose heartbeat is older than the
    grace period (``optuna.storages.fail_stale_trials``; a worker on another host may still
    be running the others).
    """
    if place.url:
        before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        optuna.storages.fail_stale_trials(study)
        after = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        return sorted(before - after)
    with no_worker_running(place) as alone:
        if not alone:
            log.info("a worker of study %s is running: its running trials are left alone",
                     place.name)
            return []
        reaped = [t.number for t in study.get_trials(deepcopy=False,
                                                       states=(TrialState.RUNNING,))
                  if fail_and_requeue(study, t.number, why)]
    for number in reaped:
        log.warning("trial %d: %s; failed, and requeued with the same values", number, why)
    return reaped


def fail_and_requeue(study: optuna.Study, number: int, why: str) -> bool:
    """Fail running trial ``number`` and requeue its values (``requeue``); False when the
    trial had already finished (another process got there first)."""
    try:
        frozen = study.tell(number, state=TrialState.FAIL)
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):  # finished meanwhile
        return False
    requeue(study, frozen, why)
    return True


def requeue(study: optuna.Study, trial: FrozenTrial, why: str) -> None:
    """Queue a failed trial's values again (Optuna's ``RetryHeartbeatStaleTrialCallback``,
    with its intermediate values, so the pruner sees the epochs the retry resumes after),
    unless it was retried ``MAX_RETRIES`` times already. ``why`` goes with the retry."""
    stopped = copy.deepcopy(trial)
    stopped.system_attrs = {**stopped.system_attrs, "retry_reason": why}
    optuna.storages.RetryHeartbeatStaleTrialCallback(
        max_retry=MAX_RETRIES, inherit_intermediate_values=True)(study, stopped)


def origin(trial: FrozenTrial | optuna.trial.Trial) -> int:
    """The number of the trial a retry repeats (its own number when it is no retry)."""
    return int(trial.system_attrs.get("failed_trial", trial.number))


def worker_name() -> str:
    """``host pid N``: which worker ran a trial."""
    return f"{socket.gethostname()} pid {os.getpid()}"


def retried_trials(trials: list[FrozenTrial]) -> dict[int, str]:
    """Trial number -> why it was stopped, for every trial that a later one retries."""
    return {int(t.system_attrs["retry_history"][-1]): str(t.system_attrs.get("retry_reason"))
            for t in trials if t.system_attrs.get("retry_history")}
