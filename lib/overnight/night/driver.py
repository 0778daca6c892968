"""One night of the chain, as cron starts it: lock, preflight, stages, compare, report.

``run_night`` holds the lock and runs each stage as a target of the Makefile, so make
decides what is already done (a rerun the same night resumes at the first unfinished stage,
and the stages it finds up to date are marked reused):

1. the preflight: every job on a slice of tonight's data (skipped when it already passed in
   this night folder). The driver links the slice and copies the champion itself, then runs
   the preflight's stages in its own folder. If one fails, the night stops here: the report
   shows the error on top and the champion is untouched.
2. ``make -k`` windows, features and the night's models (``[night] models``, in the order
   the catalog gives): ``-k`` keeps the other models going when one fails.
3. ``make search``: the hyperparameter search in the hours left (off on a CPU unless asked);
   its best trial is the model ``search``. Not when the windows or the features failed in
   step 2: make would run that stage again, and a hung one would hang again.
4. ``make compare``: scores whatever trained; with no model, the champion stays.
5. ``make report``: always.

The night's folder (``layout.NightFolder``) holds ``night.log`` (everything, time-stamped),
``night.json`` (every attempt and the outcome), and a log and a status record per stage.
Only one night runs at a time: a second start finds the lock (``flock`` on ``lock_path``)
held and exits with ``EXIT_LOCKED`` and a message naming the running night.

Standard library only: the driver runs on the host, also when the jobs run in containers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from overnight import atomic
from overnight.config import NightConfig
from overnight.layout import (
    DISK_STAGE,
    FEATURES_STAGE,
    SEARCH_STAGE,
    WINDOWS_STAGE,
    NightFolder,
    model_stages,
    preflight_stages,
)
from overnight.models.catalog import Catalog, load_catalog
from overnight.night import container, records
from overnight.night.preflight import make_slice, slice_roots
from overnight.night.runner import BANNER, run_command, run_stage, stage_time_limit, stamped

EXIT_OK = 0
EXIT_STAGE_FAILED = 1
EXIT_PREFLIGHT_FAILED = 2
EXIT_NO_REPORT = 3
EXIT_LOCKED = 75  # EX_TEMPFAIL: try again later
EXIT_MEANINGS = {
    EXIT_OK: "every stage ran; the report says whether the champion changed",
    EXIT_STAGE_FAILED: "a stage failed; the night compared what trained and wrote the report",
    EXIT_PREFLIGHT_FAILED: "the preflight failed; the night stopped before the long stages, "
                           "the champion is untouched",
    EXIT_NO_REPORT: "the report could not be written; see night.log",
    EXIT_LOCKED: "another night is running; this start did nothing",
}
PREFLIGHT = "preflight"
# The preflight trains each model for one epoch: it tests the code, not the model.
PREFLIGHT_TRAIN_SET = "--set train.max_epochs=1 --set train.patience=1"
# and the search for one trial, in a study of its own (never the night's, nor a shared one);
# its compare promotes whatever passes the fresh-process check, at any speed: one-epoch
# models timed while the machine does other work say nothing of the night's.
PREFLIGHT_SEARCH_SET = "--set search.max_trials=1"
PREFLIGHT_COMPARE_SET = "--set compare.max_ms_per_window=0"
_NOTIFY_TIMEOUT_S = 120


@dataclasses.dataclass(frozen=True)
class Night:
    """What one night needs to know; the Makefile passes it (``make overnight``).

    ``make`` is the command that runs a target; every sub-make also gets ``WORK`` and
    ``DATE``, so a night that crosses midnight keeps its folder.
    """

    work_dir: Path  # the night's folder, runs/<date>
    date: str  # the night, YYYY-MM-DD (the evening it started)
    lock_path: Path  # one night at a time
    reports_dir: Path  # where make report writes <date>.html
    data: tuple[Path, ...]  # tonight's BIDS roots: the preflight links its slice from them
    submission_dir: Path  # the champion: the preflight compares against a copy
    preflight_subjects: int  # subjects that must give windows in the preflight
    preflight_max_subjects: int  # subjects its slice links, read until enough give windows
    make: tuple[str, ...]  # the command that makes a target, e.g. ("make", "-C", repo)
    runner: str  # "local" or a container engine (check it first, stop stale containers)
    gpu: str  # with a container runner: the GPU kind the image is for
    image: str  # with a container runner: the image the jobs run in
    fresh: bool = False  # start the night over
    notify_cmd: str | None = None  # run at the end with the outcome (sh -c)
    # [night]: the models it trains (the stages it makes) and the time limits
    settings: NightConfig = dataclasses.field(default_factory=NightConfig)
    deadline: float | None = None  # epoch seconds: set when an attempt starts
    gpus: tuple[str, ...] = ()  # one model per GPU: the models are made with -j<count>

    @property
    def folder(self) -> NightFolder:
        return NightFolder(self.work_dir)

    @property
    def catalog(self) -> Catalog:
        """The registered models and the night's choice (read from their source, in the
        checkout the driver runs from).

        Raises
        ------
        ValueError
            A model file cannot be read, or ``[night] models`` names an unknown model.
        """
        return load_catalog(self.settings)

    def model_stages(self) -> tuple[str, ...]:
        """The stages up to the night's models, in the order they are made; without the
        models when the catalog cannot be read (the preflight's first step fails with why,
        before anything is made)."""
        try:
            return self.catalog.model_stages()
        except ValueError:
            return model_stages((), ())

    def starting(self) -> Night:
        """This night as an attempt that starts now: the night's hours from here (a morning
        rerun gets them again)."""
        return dataclasses.replace(self, deadline=time.time() + self.settings.night_limit_h * 3600)

    def make_command(self, *targets: str, dry_run: bool = False, **variables: str) -> list[str]:
        """The sub-make that builds ``targets`` in this night's folder."""
        settings = {"WORK": str(self.work_dir), "DATE": self.date,
                    **({"NIGHT_DEADLINE": f"{self.deadline:.0f}"} if self.deadline else {}),
                    **({"GPUS": ",".join(self.gpus)} if self.gpus else {}),
                    **variables}
        return [*self.make, *(["-n"] if dry_run else []), *targets,
                *(f"{name}={value}" for name, value in settings.items())]

    def preflight_command(self, dry_run: bool = False) -> list[str]:
        """The sub-make that runs every job on the preflight's slice, in its folder."""
        pre = self.folder.preflight
        # Its windows stage reads the slice until enough subjects give windows; a slice that
        # small cannot hold out a release, so it splits by share.
        windows_set = (f"--enough-subjects {self.preflight_subjects} "
                       "--set 'windows.val_releases=[]'")
        return self.make_command(
            *preflight_stages(self.model_stages()), dry_run=dry_run, WORK=str(pre.root),
            DATA=" ".join(map(str, slice_roots(self.data, pre.bids))),
            EXTRA_RO=" ".join(os.path.abspath(root) for root in self.data),
            SUBMISSION=str(pre.submission), REPORTS=str(pre.reports),
            TRAIN_SET=PREFLIGHT_TRAIN_SET, WINDOWS_SET=windows_set,
            SEARCH_SET=PREFLIGHT_SEARCH_SET, COMPARE_SET=PREFLIGHT_COMPARE_SET,
            SEARCH_DIR=str(pre.studies),
            SEARCH_STORAGE="",
            WINDOW_PARTS="")  # the slice, not the night's joined caches


def run_night(night: Night) -> int:
    """Run the night; return its exit code (``EXIT_MEANINGS``).

    Raises
    ------
    TypeError
        ``night`` is not a ``Night``.
    """
    if not isinstance(night, Night):
        raise TypeError(f"night must be a Night, got {type(night).__name__}")
    with _night_lock(night) as holder:
        if holder is not None:
            print(f"overnight: another night is running ({holder}); lock {night.lock_path} "
                  "is held, so this start does nothing (exit 75)", flush=True)
            return EXIT_LOCKED
        if night.fresh and night.work_dir.exists():
            _check_removable(night.work_dir)
            shutil.rmtree(night.work_dir)
        night.work_dir.mkdir(parents=True, exist_ok=True)
        with open(night.folder.night_log, "a", encoding="utf-8") as log, \
                contextlib.redirect_stdout(_StampedTee(sys.stdout, log)):
            return _run_locked(night)


def run_preflight(night: Night) -> int:
    """Only the preflight (``make preflight``), under the night's lock; 0 when it passed."""
    with _night_lock(night) as holder:
        if holder is not None:
            print(f"overnight: another night is running ({holder}); the preflight waits for "
                  "it (exit 75)", flush=True)
            return EXIT_LOCKED
        return 0 if _preflight(night.starting(), rerun=True) else EXIT_PREFLIGHT_FAILED


def dry_run(night: Night, preflight_only: bool = False) -> int:
    """Print every command the night (or only its preflight) would run (``make -n
    overnight``); run and write nothing."""
    pre = night.folder.preflight
    print(f"# overnight: dry run of the night {night.date} in {night.work_dir} "
          "(each step is a make target; make skips what is done)", flush=True)
    if night.runner in container.ENGINES:
        print(f"# preflight: check {night.runner}, that it answers, and the image "
              f"{night.image} (GPU={night.gpu})", flush=True)
    try:
        print(f"# models: {', '.join(night.catalog.night)}", flush=True)
    except ValueError as exc:
        print(f"# models: the preflight would fail: {exc}", flush=True)
    print(f"# preflight: link up to {night.preflight_max_subjects} subjects of "
          f"{' '.join(map(str, night.data))} into {pre.bids}; copy {night.submission_dir} "
          f"to {pre.submission}", flush=True)
    commands = [night.preflight_command(dry_run=True)]
    if not preflight_only:
        commands += [night.make_command("-k", *night.model_stages(), dry_run=True),
                     night.make_command(SEARCH_STAGE, dry_run=True),
                     night.make_command("compare", dry_run=True),
                     night.make_command("report", dry_run=True)]
    worst = 0
    for command in commands:
        print(f"# ---- {shlex.join(command)}", flush=True)
        worst = max(worst, subprocess.run(command, check=False).returncode)
    return worst


def _run_locked(night: Night) -> int:
    started = time.time()
    night = night.starting()
    record = _start_attempt(night, started)
    _banner(f"night {night.date} in {night.work_dir}: attempt {len(record['attempts'])}"
            + (" (FRESH: started over)" if night.fresh else ""))
    for stage in records.mark_interrupted(night.folder):
        print(f"stage {stage} was still marked running: the last attempt was interrupted; "
              "make redoes it if its output is missing", flush=True)
    for path in atomic.remove_partial_files(night.work_dir):
        print(f"removed {path}: half-written by the interrupted attempt", flush=True)
    if night.runner in container.ENGINES:
        _stop_stale_containers(night.runner)

    preflight_ok = _preflight(night)
    make_failed = []
    if preflight_ok:
        parallel = (f"-j{len(night.gpus)}", "--output-sync=line") if len(night.gpus) > 1 else ()
        stages = night.model_stages()
        steps = (("stages: " + ", ".join(stages)
                  + (f", {len(night.gpus)} models at a time" if parallel else ""),
                  ("-k", *parallel, *stages)),
                 ("search: the [train] settings, in the hours left", (SEARCH_STAGE,)),
                 ("compare what trained, promote through the gate", ("compare",)))
        for title, targets in steps:
            failed_input = _failed_input(night, targets)
            if failed_input:  # make would run it again, and a hung stage would hang again
                _banner(title)
                print(f"{' '.join(targets)}: not run: its input {failed_input} failed "
                      "tonight", flush=True)
            elif _step(night, title, *targets) != 0:
                make_failed.append(" ".join(targets))
    report_code = _step(night, "report", "report")

    exit_code = _exit_code(preflight_ok, report_code,
                           bool(make_failed or records.failed_stages(night.folder)))
    outcome = _outcome(night, exit_code, time.time() - started, make_failed)
    _banner(f"night {night.date} finished, exit code {exit_code}: "
            f"{EXIT_MEANINGS[exit_code]}", *outcome["lines"])
    _finish_attempt(night, record, exit_code, outcome)
    _notify(night, exit_code, outcome)
    return exit_code


def _preflight(night: Night, rerun: bool = False) -> bool:
    """Run the preflight unless it passed before in this night's folder; then, for a night
    (not ``make preflight`` alone, ``rerun``), check the disks on every attempt."""
    status = records.read_stage(night.folder, PREFLIGHT)
    if not rerun and status and status.get("status") == records.OK:
        print(f"preflight passed at {status.get('end')} in this night's folder: not rerun "
              "(FRESH=1 starts the night over)", flush=True)
        records.mark_reused(night.folder, PREFLIGHT)
    else:
        _banner("preflight: every job on a slice of tonight's data (one epoch)")
        code = run_stage(PREFLIGHT, night.preflight_command(), night.folder,
                         prepare=lambda say: _prepare_preflight(night, say),
                         limit=stage_time_limit(PREFLIGHT, night.settings, night.deadline))
        if code != 0:
            return False
    return rerun or _check_disk(night)


def _check_disk(night: Night) -> bool:
    """Stage disk: room on every file system for what the night will write."""
    _banner("disk space: what the night will write, from the preflight, against what is free")
    command = [sys.executable, "jobs/check_disk.py", "--preflight",
               str(night.folder.preflight.root), "--data", *map(str, night.data), "--work",
               str(night.work_dir), "--reports", str(night.reports_dir), "--submission",
               str(night.submission_dir)]
    return run_stage(DISK_STAGE, command, night.folder,
                     limit=stage_time_limit(DISK_STAGE, night.settings, night.deadline)) == 0


def _prepare_preflight(night: Night, say: Callable[[str], None]) -> None:
    """The preflight's folder: a fresh slice of tonight's data and a copy of the champion;
    first, the night's models as the catalog reads them (a model file it cannot read fails
    the preflight here, with the file and the fault)."""
    pre = night.folder.preflight
    catalog = night.catalog
    say("models: " + "; ".join(e.describe() for e in catalog.night_entries()))
    if night.runner in container.ENGINES:
        problem = container.check_engine(night.runner, night.image, night.gpu)
        if problem:
            raise RuntimeError(f"RUNNER={night.runner}: {problem}")
        say(f"RUNNER={night.runner}: {night.runner} and image {night.image} ready "
            f"(GPU={night.gpu})")
    if pre.root.exists():
        shutil.rmtree(pre.root)
    summary = make_slice(night.data, pre.bids, night.preflight_max_subjects)
    say(f"preflight slice: {len(summary['subjects'])} subjects "
        f"({', '.join(summary['subjects'])}), {summary['n_recordings']} recordings -> "
        f"{pre.bids}; the window stage reads them until {night.preflight_subjects} give "
        "windows")
    pre.reports.mkdir(parents=True)
    if night.submission_dir.is_dir():
        shutil.copytree(night.submission_dir, pre.submission, symlinks=True)
        say(f"champion copied from {night.submission_dir} to {pre.submission}")
    else:
        pre.submission.mkdir()


def _failed_input(night: Night, targets: tuple[str, ...]) -> str | None:
    """The stage the search reads that failed in this attempt's model step (the windows or
    the features), or None; other steps read only what trained."""
    if SEARCH_STAGE not in targets:
        return None
    for stage in (WINDOWS_STAGE, FEATURES_STAGE):
        status = records.read_stage(night.folder, stage)
        if status and status.get("status") in records.FAILURES:
            return stage
    return None


def _step(night: Night, title: str, *targets: str) -> int:
    """Make ``targets``, after marking the ones make finds up to date as reused."""
    _banner(title)
    for target in targets:
        if not target.startswith("-") and _up_to_date(night, target):
            records.mark_reused(night.folder, target)
            print(f"{target}: up to date, reused", flush=True)
    command = night.make_command(*targets)
    print(f"$ {shlex.join(command)}", flush=True)
    code = run_command(command, sys.stdout.write).exit_code
    sys.stdout.flush()
    return code


def _up_to_date(night: Night, target: str) -> bool:
    """Whether make would do nothing for ``target`` (``make -q``)."""
    done = subprocess.run(night.make_command("-q", target), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False)
    return done.returncode == 0


def _exit_code(preflight_ok: bool, report_code: int, anything_failed: bool) -> int:
    if not preflight_ok:
        return EXIT_PREFLIGHT_FAILED
    if report_code != 0:
        return EXIT_NO_REPORT
    return EXIT_STAGE_FAILED if anything_failed else EXIT_OK


def _outcome(night: Night, exit_code: int, seconds: float,
             make_failed: list[str]) -> dict[str, Any]:
    """A one-line headline and the lines that explain it (failures first)."""
    failed = records.failed_stages(night.folder)
    if exit_code == EXIT_PREFLIGHT_FAILED:
        failed = records.failed_stages(night.folder.preflight) or failed
    lines = [f"stage {s['stage']} failed (exit {s.get('exit_code')}): {s.get('error')} "
             f"[{s.get('log')}]" for s in failed]
    if make_failed and not failed:  # make itself stopped, before any stage could run
        lines += [f"make {targets} failed before running a stage: see "
                  f"{night.folder.night_log.name}" for targets in make_failed]
    comparison = records.read_record(night.folder.comparison)
    decision = (comparison or {}).get("decision") or {}
    if decision.get("reason") and exit_code != EXIT_PREFLIGHT_FAILED:
        lines.append(f"decision: {decision['reason']}")
    report = night.reports_dir / f"{night.date}.html"
    if exit_code != EXIT_NO_REPORT:
        lines.append(f"report: {report}")
    headline = {
        EXIT_OK: "ok" + (f", promoted {decision.get('model')}" if decision.get("promoted")
                         else ", champion kept"),
        EXIT_STAGE_FAILED: f"{len(failed) or 'a'} stage(s) failed",
        EXIT_PREFLIGHT_FAILED: "preflight failed, night stopped, champion untouched",
        EXIT_NO_REPORT: "no report",
    }[exit_code]
    minutes = seconds / 60
    return {"headline": f"overnight {night.date}: {headline} ({minutes:.0f} min)",
            "lines": lines, "report": str(report)}


def _check_removable(work_dir: Path) -> None:
    """FRESH deletes the night folder: never the checkout or a folder above it."""
    folder = work_dir.resolve()
    if folder == Path.cwd().resolve() or folder in Path.cwd().resolve().parents \
            or (folder / ".git").exists():
        raise ValueError(f"FRESH=1 would delete {folder}, which holds the checkout: set WORK "
                         "to a night folder such as runs/<date>")


def _stop_stale_containers(engine: str) -> None:
    stale = container.stale_containers(engine, Path.cwd())
    if stale:
        print(f"removing {len(stale)} container(s) left by a killed night: "
              f"{' '.join(stale)}", flush=True)
        for left in stale:
            container.remove(engine, left)


def _start_attempt(night: Night, started: float) -> dict[str, Any]:
    record = records.read_night(night.folder) or {"date": night.date,
                                                  "work_dir": str(night.work_dir),
                                                  "attempts": []}
    record["attempts"].append({"start": records.timestamp(started), "pid": os.getpid(),
                               "end": None, "exit_code": None, "fresh": night.fresh})
    record.update(state="running", exit_code=None, outcome=None)
    records.write_night(night.folder, record)
    return record


def _finish_attempt(night: Night, record: dict[str, Any], exit_code: int,
                    outcome: dict[str, Any]) -> None:
    record["attempts"][-1].update(end=records.timestamp(time.time()), exit_code=exit_code)
    record.update(state="finished", exit_code=exit_code, meaning=EXIT_MEANINGS[exit_code],
                  outcome=outcome["headline"], details=outcome["lines"],
                  report=outcome["report"])
    records.write_night(night.folder, record)


def _notify(night: Night, exit_code: int, outcome: dict[str, Any]) -> None:
    """Run NOTIFY_CMD with the outcome in its environment and the details on stdin."""
    if not night.notify_cmd:
        return
    env = {**os.environ, "OVERNIGHT_EXIT_CODE": str(exit_code),
           "OVERNIGHT_OUTCOME": outcome["headline"], "OVERNIGHT_REPORT": outcome["report"],
           "OVERNIGHT_NIGHT_DIR": str(night.work_dir)}
    text = "\n".join([outcome["headline"], *outcome["lines"]]) + "\n"
    try:
        done = subprocess.run(["sh", "-c", night.notify_cmd], input=text, text=True, env=env,
                              capture_output=True, timeout=_NOTIFY_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        print(f"NOTIFY_CMD took longer than {_NOTIFY_TIMEOUT_S} s; stopped", flush=True)
        return
    if done.returncode != 0:
        print(f"NOTIFY_CMD failed (exit {done.returncode}): {done.stderr.strip()[-500:]}",
              flush=True)


@contextlib.contextmanager
def _night_lock(night: Night) -> Iterator[str | None]:
    """Hold the night's lock; yield None, or who holds it when another night does."""
    night.lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(night.lock_path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            yield holder or "holder unknown"
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, records.lock_holder_line(os.getpid(), night.date, night.work_dir,
                                               time.time()).encode(), 0)
        yield None
    finally:
        os.close(fd)  # closing releases the lock


class _StampedTee:
    """A text stream that writes to ``console`` as is and to ``log`` line by line, each
    line stamped with the time (``runner.stamped``)."""

    def __init__(self, console: TextIO, log: TextIO) -> None:
        self._console, self._log = console, log
        self._partial = ""

    def write(self, text: str) -> int:
        self._console.write(text)
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._log.write(stamped(line + "\n"))
        return len(text)

    def flush(self) -> None:
        self._console.flush()
        self._log.flush()


def _banner(title: str, *lines: str) -> None:
    print("\n".join([BANNER, f"{records.timestamp(time.time())}  {title}", *lines, BANNER]),
          flush=True)


def exit_code_table() -> str:
    """The exit codes and what each means, one per line (for ``--help``)."""
    return "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_MEANINGS.items())
