"""One night of the chain, as cron starts it: lock, preflight, stages, compare, report.

``run_night`` drives the Makefile's targets in order, each as a sub-``make`` so that make
decides what is already done (a rerun the same night resumes at the first unfinished
stage):

1. ``make preflight``: every job on a slice of tonight's data (skipped when it already
   passed in this night folder). If it fails, the night stops here: the report shows the
   error on top and the champion is untouched.
2. ``make -k models``: windows, features and both models; ``-k`` keeps the baseline going
   when the hybrid's branch fails.
3. ``make compare``: scores whatever trained; with no model, the champion stays.
4. ``make report``: always.

The night's folder holds ``night.log`` (everything, time-stamped), ``night.json`` (every
attempt and the outcome), ``logs/`` and ``status/`` per stage. Only one night runs at a
time: a second start finds the lock (``flock`` on ``lock_path``) held and exits with
``EXIT_LOCKED`` and a message naming the running night.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from overnight import atomic, container
from overnight.runner import BANNER, read_record, run_stage, stamped, timestamp

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
NIGHT_LOG = "night.log"
NIGHT_RECORD = "night.json"
_NOTIFY_TIMEOUT_S = 120


@dataclasses.dataclass(frozen=True)
class Night:
    """What one night needs to know; the Makefile passes it (``make overnight``).

    ``make`` is the command that runs a target, including the variables every sub-make
    must share (``WORK`` and ``DATE`` are added here, so a night that crosses midnight
    keeps its folder).
    """

    work_dir: Path  # the night's folder, runs/<date>
    date: str  # the night, YYYY-MM-DD (the evening it started)
    lock_path: Path  # one night at a time
    reports_dir: Path  # where make report writes <date>.html
    make: tuple[str, ...] = ("make", "--no-print-directory")
    runner: str = "local"  # "docker": stale containers of a killed night are stopped
    fresh: bool = False  # start the night over
    notify_cmd: str | None = None  # run at the end with the outcome (sh -c)

    def make_command(self, *targets: str, dry_run: bool = False) -> list[str]:
        """The sub-make that builds ``targets`` in this night's folder."""
        return [*self.make, *(["-n"] if dry_run else []), *targets,
                f"WORK={self.work_dir}", f"DATE={self.date}"]


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
        with open(night.work_dir / NIGHT_LOG, "a", encoding="utf-8") as log, \
                contextlib.redirect_stdout(_StampedTee(sys.stdout, log)):
            return _run_locked(night)


def dry_run(night: Night) -> int:
    """Print every command the night would run (``make -n overnight``); run and write nothing."""
    print(f"# overnight: dry run of the night {night.date} in {night.work_dir} "
          "(each step is a sub-make; make skips what is done)", flush=True)
    worst = 0
    for targets in (("preflight",), ("-k", "models"), ("compare",), ("report",)):
        command = night.make_command(*targets, dry_run=True)
        print(f"# ---- {shlex.join(command)}", flush=True)
        worst = max(worst, subprocess.run(command, check=False).returncode)
    return worst


def _run_locked(night: Night) -> int:
    started = time.time()
    record = _start_attempt(night, started)
    _banner(f"night {night.date} in {night.work_dir}: attempt {len(record['attempts'])}"
            + (" (FRESH: started over)" if night.fresh else ""))
    for stage in _mark_interrupted(night.work_dir):
        print(f"stage {stage} was still marked running: the last attempt was interrupted; "
              "make redoes it if its output is missing", flush=True)
    for path in _remove_partial_files(night.work_dir):
        print(f"removed {path}: half-written by the interrupted attempt", flush=True)
    if night.runner == "docker":
        _stop_stale_containers()

    preflight_ok = _preflight(night)
    make_failed = []
    if preflight_ok:
        for title, targets in (("stages: windows, features, baseline, hybrid", ("-k", "models")),
                               ("compare what trained, promote through the gate", ("compare",))):
            if _step(night, title, *targets) != 0:
                make_failed.append(" ".join(targets))
    report_code = _step(night, "report", "report")

    exit_code = _exit_code(preflight_ok, report_code,
                           bool(make_failed or _failed_stages(night.work_dir)))
    outcome = _outcome(night, exit_code, time.time() - started, make_failed)
    _banner(f"night {night.date} finished, exit code {exit_code}: "
            f"{EXIT_MEANINGS[exit_code]}", *outcome["lines"])
    _finish_attempt(night, record, exit_code, outcome)
    _notify(night, exit_code, outcome)
    return exit_code


def _preflight(night: Night) -> bool:
    """Run the preflight unless it passed before in this night's folder."""
    status = read_record(night.work_dir / "status" / "preflight.json")
    if status and status.get("status") == "ok":
        print(f"preflight passed at {status.get('end')} in this night's folder: not rerun "
              "(FRESH=1 starts the night over)", flush=True)
        return True
    _banner("preflight: every job on a slice of tonight's data (one epoch)")
    return run_stage("preflight", night.make_command("preflight"), night.work_dir) == 0


def _step(night: Night, title: str, *targets: str) -> int:
    _banner(title)
    command = night.make_command(*targets)
    print(f"$ {shlex.join(command)}", flush=True)
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, errors="replace")
    except OSError as exc:
        print(f"cannot start {command[0]!r}: {exc}", flush=True)
        return 127
    assert proc.stdout is not None  # guaranteed by stdout=PIPE
    for line in proc.stdout:
        sys.stdout.write(line)
    sys.stdout.flush()
    return proc.wait()


def _exit_code(preflight_ok: bool, report_code: int, anything_failed: bool) -> int:
    if not preflight_ok:
        return EXIT_PREFLIGHT_FAILED
    if report_code != 0:
        return EXIT_NO_REPORT
    return EXIT_STAGE_FAILED if anything_failed else EXIT_OK


def _outcome(night: Night, exit_code: int, seconds: float,
             make_failed: list[str]) -> dict[str, Any]:
    """A one-line headline and the lines that explain it (failures first)."""
    failed = _failed_stages(night.work_dir)
    if exit_code == EXIT_PREFLIGHT_FAILED:
        failed = _failed_stages(night.work_dir / "preflight") or failed
    lines = [f"stage {s['stage']} failed (exit {s.get('exit_code')}): {s.get('error')} "
             f"[{s.get('log')}]" for s in failed]
    if make_failed and not failed:  # make itself stopped, before any stage could run
        lines += [f"make {targets} failed before running a stage: see {NIGHT_LOG}"
                  for targets in make_failed]
    comparison = read_record(night.work_dir / "comparison.json")
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


def _failed_stages(work_dir: Path) -> list[dict[str, Any]]:
    stages = [read_record(p) for p in sorted((work_dir / "status").glob("*.json"))]
    return [s for s in stages if s and s.get("status") == "failed"]


def _mark_interrupted(work_dir: Path) -> list[str]:
    """Stages left 'running' by a killed night (we hold the lock: none can be running)."""
    marked = []
    for path in sorted((work_dir / "status").glob("*.json")):
        status = read_record(path)
        if status and status.get("status") == "running":
            status.update(status="interrupted",
                          error="interrupted: the night was killed during this stage")
            atomic.write_json(path, status)
            marked.append(str(status.get("stage", path.stem)))
    return marked


def _remove_partial_files(work_dir: Path) -> list[Path]:
    """Temporary files of ``atomic`` writes that a killed stage never moved into place.

    Symlinks are not followed: the preflight's slice links into the input data.
    """
    partial = []
    for folder, _, names in os.walk(work_dir, followlinks=False):
        partial += [Path(folder, n) for n in names if n.startswith(".") and n.endswith(".tmp")]
    for path in partial:
        path.unlink(missing_ok=True)
    return sorted(partial)


def _check_removable(work_dir: Path) -> None:
    """FRESH deletes the night folder: never the checkout or a folder above it."""
    folder = work_dir.resolve()
    if folder == Path.cwd().resolve() or folder in Path.cwd().resolve().parents \
            or (folder / ".git").exists():
        raise ValueError(f"FRESH=1 would delete {folder}, which holds the checkout: set WORK "
                         "to a night folder such as runs/<date>")


def _stop_stale_containers() -> None:
    stale = container.stale_containers(Path.cwd())
    if stale:
        print(f"stopping {len(stale)} container(s) left running by a killed night: "
              f"{' '.join(stale)}", flush=True)
        subprocess.run(["docker", "rm", "--force", *stale], check=False)


def _start_attempt(night: Night, started: float) -> dict[str, Any]:
    path = night.work_dir / NIGHT_RECORD
    record = read_record(path) or {"date": night.date, "work_dir": str(night.work_dir),
                                  "attempts": []}
    record["attempts"].append({"start": timestamp(started), "pid": os.getpid(), "end": None,
                               "exit_code": None, "fresh": night.fresh})
    record.update(state="running", exit_code=None, outcome=None)
    atomic.write_json(path, record)
    return record


def _finish_attempt(night: Night, record: dict[str, Any], exit_code: int,
                    outcome: dict[str, Any]) -> None:
    record["attempts"][-1].update(end=timestamp(time.time()), exit_code=exit_code)
    record.update(state="finished", exit_code=exit_code, meaning=EXIT_MEANINGS[exit_code],
                  outcome=outcome["headline"], details=outcome["lines"],
                  report=outcome["report"])
    atomic.write_json(night.work_dir / NIGHT_RECORD, record)


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
        os.pwrite(fd, f"pid {os.getpid()}, night {night.date} in {night.work_dir}, started "
                      f"{timestamp(time.time())}\n".encode(), 0)
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
    print("\n".join([BANNER, f"{timestamp(time.time())}  {title}", *lines, BANNER]), flush=True)




def exit_code_table() -> str:
    """The exit codes and what each means, one per line (for ``--help``)."""
    return "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_MEANINGS.items())
