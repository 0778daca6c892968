"""Runs one stage of the chain: its command, its log, its status record.

The command is whatever the Makefile's ``JOB`` prefix makes of the job (a local Python, or
``docker run ... python`` with ``RUNNER=docker``, ``podman run`` with ``RUNNER=podman``);
the runner only times it, copies its
output to our stdout and, each line stamped with the time, into the stage's log, and writes
its status record (``night.records``): start, end, seconds, exit code and, when it failed,
the error line read from its output (the exception, not make's echo of it).

A stage has a time limit: past it, the command and every process it started get SIGTERM,
then SIGKILL after a grace period, and the stage is "timed out"; a stage's container is
removed by its name when its client ends, even one the stopped client left running (its job
deaf to SIGTERM). The command stays in the
night's process group, so a signal to the night (Ctrl-C, a kill of the group) still reaches
every job; the processes to stop are found by walking the process tree (Linux ``/proc``),
and the runner adopts the orphans of its command (a child subreaper), so a grandchild
whose parent has exited is still found.

Standard library only: it runs on the host, also when the jobs run in containers.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import fcntl
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from overnight.config import NightConfig
from overnight.layout import REPORT_STAGE, NightFolder
from overnight.night import container
from overnight.night.processes import descendants
from overnight.night.records import FAILED, OK, RUNNING, TIMED_OUT, timestamp, write_stage

BANNER = "=" * 78
TIMED_OUT_EXIT = 124  # a stage stopped at its time limit (as coreutils' timeout exits)
# What pins a job to one GPU: CUDA's name (which ROCm's torch honours too) and HIP's.
GPU_PIN_VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")
_GPU_WAIT_S = 1.0  # how often a job waiting for a free GPU looks again
_PR_SET_CHILD_SUBREAPER = 36  # prctl option, <linux/prctl.h>
_TAIL_LINES = 200  # lines of output kept to find the error of a failed stage
# "ValueError: ...", "torch.OutOfMemoryError: ...", "numba.core.errors.TypingError: ..."
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception|Exit|"
                         r"Interrupt|Fault)\b:?.*")
_STAMPED = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")
_MAKE_LINE = re.compile(r"^make(\[\d+\])?: ")  # make's own "*** [...] Error 1" and the like
_LOG_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \w+\s+\S+: ")  # cli.setup
# What the engines' own exit codes mean, and the fix (their containers' codes pass through).
_ENGINE_HINTS = {
    125: "{engine} could not start the container: is the image built (make image) and the "
         "engine running?",
    126: "{engine} could not run the command inside the container",
    127: "{engine} found no such command inside the container",
}


@dataclasses.dataclass(frozen=True)
class Finished:
    """How a command ended: its exit code (127: it could not start; ``TIMED_OUT_EXIT``:
    stopped at its time limit), its last lines of output, and whether it was stopped."""

    exit_code: int
    tail: list[str]
    timed_out: bool = False


@dataclasses.dataclass(frozen=True)
class TimeLimit:
    """How long a command may run, and how long it gets to end after SIGTERM."""

    seconds: float
    grace_s: float = 30.0
    why: str = ""  # which limit: shown in the stage's error


def stage_time_limit(stage: str, limits: NightConfig, deadline: float | None) -> TimeLimit:
    """The stage's own limit, cut to what is left of the night (``deadline``, epoch
    seconds), except for the report: it always runs, so the morning has its page."""
    setting = limits.limit_setting(stage)
    minutes = getattr(limits, setting)
    seconds, why = minutes * 60.0, f"[night] {setting} = {minutes:g}"
    left = None if deadline is None or stage == REPORT_STAGE else deadline - time.time()
    if left is not None and left < seconds:
        seconds = left
        why = f"the night's limit, [night] night_limit_h = {limits.night_limit_h:g}"
    return TimeLimit(seconds, limits.kill_grace_s, why)


@contextlib.contextmanager
def pinned_gpu(gpus: Sequence[str], lock_dir: Path) -> Iterator[str | None]:
    """Hold one of ``gpus`` for the block, the first whose lock is free (waiting while all
    are held): the jobs ``make -j`` runs at once each get their own GPU. None without
    ``gpus``."""
    if not gpus:
        yield None
        return
    lock_dir.mkdir(parents=True, exist_ok=True)
    while True:
        for gpu in gpus:
            fd = os.open(lock_dir / f"gpu-{gpu}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield gpu
            finally:
                os.close(fd)  # closing releases the lock
            return
        time.sleep(_GPU_WAIT_S)


def run_stage(stage: str, command: list[str], folder: NightFolder,
              prepare: Callable[[Callable[[str], None]], None] | None = None,
              limit: TimeLimit | None = None, gpus: Sequence[str] = ()) -> int:
    """Run ``command`` as stage ``stage`` of the night in ``folder``; return its exit code.

    Parameters
    ----------
    stage : str
        The stage's name: names its log and its status record.
    command : list of str
        The command and its arguments.
    folder : NightFolder
        The night's folder.
    prepare : callable, optional
        Runs first, inside the stage: it gets a function that writes a line to the
        stage's output. An exception fails the stage (exit code 1, its message the error)
        and the command does not run.
    limit : TimeLimit, optional
        Past it the command is stopped and the stage is "timed out"; a limit of 0 or less
        (the night's time is up) does not start the command at all.
    gpus : sequence of str, optional
        GPUs to choose from: the command runs pinned to one that no other stage holds
        (``pinned_gpu``), through ``GPU_PIN_VARIABLES``.

    Returns
    -------
    int
        The command's exit code; 127 when it cannot be started, ``TIMED_OUT_EXIT`` when it
        was stopped at its time limit.

    Raises
    ------
    ValueError
        An empty command or a stage name that is not a plain file name.
    """
    if not command:
        raise ValueError("run_stage needs a command to run")
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", stage):
        raise ValueError(f"stage={stage!r}: expected a plain name such as 'train-hybrid'")
    log_path = folder.log(stage)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    status: dict[str, Any] = {
        "stage": stage, "status": RUNNING, "start": timestamp(started), "end": None,
        "seconds": None, "exit_code": None, "error": None, "command": command,
        "log": str(log_path.relative_to(folder.root)),
    }
    write_stage(folder, status)
    with open(log_path, "a", encoding="utf-8") as log:
        _banner(log, f"{timestamp(started)}  stage {stage} started",
                f"command: {' '.join(command)}")
        finished = _prepare(prepare, log)
        if finished.exit_code == 0:
            with pinned_gpu(gpus, folder.root / ".gpus") as gpu:
                env = None
                if gpu is not None:
                    _write(log, f"pinned to GPU {gpu} ({', '.join(GPU_PIN_VARIABLES)})\n")
                    env = {**os.environ, **dict.fromkeys(GPU_PIN_VARIABLES, gpu)}
                named, name = container.with_name(command, stage)
                finished = run_command(named, lambda line: _write(log, line), limit, env)
                if name is not None:
                    _remove_container(command[0], name, log, finished.timed_out)
        ended = time.time()
        exit_code = finished.exit_code
        if finished.timed_out:
            error = _timed_out_error(limit, ended - started)
            verdict = "TIMED OUT"
        else:
            error = None if exit_code == 0 else _error_line(finished.tail, command, exit_code)
            verdict = "ok" if exit_code == 0 else f"FAILED, exit code {exit_code}"
        _banner(log, f"{timestamp(ended)}  stage {stage} {verdict} after {ended - started:.1f} s",
                *([f"error: {error}"] if error else []))
    outcome = TIMED_OUT if finished.timed_out else OK if exit_code == 0 else FAILED
    status.update(status=outcome, end=timestamp(ended),
                  seconds=round(ended - started, 2), exit_code=exit_code, error=error)
    write_stage(folder, status)
    return exit_code


def _remove_container(engine: str, name: str, log: TextIO, stopped: bool) -> None:
    """The stage's container ran without --rm (``container.with_name``): remove it before
    the night goes on. A stopped client may have left it running (a job deaf to SIGTERM),
    which the log tells."""
    if container.remove(engine, name) and stopped:
        _write(log, f"removed container {name}, left running by the stopped client\n")


def _prepare(prepare: Callable[[Callable[[str], None]], None] | None,
             log: TextIO) -> Finished:
    if prepare is None:
        return Finished(0, [])
    try:
        prepare(lambda text: _write(log, text.rstrip("\n") + "\n"))
    except Exception as exc:  # any failure to prepare fails the stage, with its reason
        message = f"{type(exc).__name__}: {exc}"
        _write(log, message + "\n")
        return Finished(1, [message])
    return Finished(0, [])


def run_command(command: list[str], sink: Callable[[str], Any],
                limit: TimeLimit | None = None,
                env: dict[str, str] | None = None) -> Finished:
    """Run ``command`` and hand each line of its output (stdout and stderr) to ``sink``.

    A carriage return (a progress bar redrawing) ends a line too, so every update of a bar
    is a line of its own. With ``limit``, the command and its descendants are stopped
    (SIGTERM, then SIGKILL) when the limit passes.
    """
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    if limit is not None and limit.seconds <= 0:
        message = f"not started: no time left ({limit.why})"
        sink(message + "\n")
        return Finished(TIMED_OUT_EXIT, [message], timed_out=True)
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, errors="replace", env=env)
    except OSError as exc:
        message = f"cannot start {command[0]!r}: {exc}"
        if command[0] in container.ENGINES:
            message += f" (install {command[0]}, or run with RUNNER=local)"
        sink(message + "\n")
        return Finished(127, [message])
    assert proc.stdout is not None  # guaranteed by stdout=PIPE
    stopped = threading.Event()
    with _watchdog(proc, limit, stopped):
        for line in proc.stdout:
            sink(line)
            tail.append(line.rstrip("\n"))
        exit_code = proc.wait()
    if stopped.is_set():
        return Finished(TIMED_OUT_EXIT, list(tail), timed_out=True)
    return Finished(exit_code, list(tail))


@contextlib.contextmanager
def _watchdog(proc: subprocess.Popen[str], limit: TimeLimit | None,
              stopped: threading.Event) -> Iterator[None]:
    """Stop ``proc`` and its descendants when ``limit`` passes: SIGTERM, then SIGKILL after
    the grace period, also to the descendants that outlived ``proc`` (one may still hold the
    output pipe)."""
    if limit is None:
        yield
        return
    _adopt_orphans()
    # what this process ran before the command (a test runner's helpers) is not stopped
    others = descendants(os.getpid()) - {proc.pid} - descendants(proc.pid)
    done = threading.Event()

    def watch() -> None:
        if done.wait(limit.seconds):
            return
        stopped.set()
        _signal_all(descendants(os.getpid()) - others, signal.SIGTERM)
        done.wait(limit.grace_s)
        _signal_all(descendants(os.getpid()) - others, signal.SIGKILL)

    thread = threading.Thread(target=watch, name="stage-time-limit", daemon=True)
    thread.start()
    try:
        yield
    finally:
        # The output has ended: in time, the watch ends without a signal; after SIGTERM,
        # what is left of the group gets SIGKILL now rather than after the grace period.
        done.set()
        thread.join()


def _adopt_orphans() -> None:
    """Become the child subreaper of what the command starts (Linux): a process whose
    parent exits is re-parented here, not to init, and stays in the tree the limit stops.
    What the runner started before the command is left alone."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _signal_all(pids: set[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _timed_out_error(limit: TimeLimit | None, seconds: float) -> str:
    why = f" ({limit.why})" if limit and limit.why else ""
    return f"timed out: stopped after {duration_text(seconds)}{why}"


def _write(log: TextIO, line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()
    log.write(stamped(line))
    log.flush()


def stamped(line: str) -> str:
    """``line`` led by the time of day, unless it starts with a date and time already (the
    jobs' logging lines do)."""
    return line if _STAMPED.match(line) else time.strftime("%H:%M:%S ") + line


def _banner(log: TextIO, *lines: str) -> None:
    log.write("\n".join([BANNER, *lines, BANNER]) + "\n")
    log.flush()


def _error_line(tail: list[str], command: list[str], exit_code: int) -> str:
    """The line that says what went wrong: the last exception, else the last output line."""
    lines = [_LOG_PREFIX.sub("", line.strip()) for line in tail
             if line.strip() and not _MAKE_LINE.match(line)]
    for text in reversed(lines):
        if _ERROR_LINE.match(text):
            return text
    hint = _ENGINE_HINTS.get(exit_code) if command[0] in container.ENGINES else None
    if hint:
        return hint.format(engine=command[0])
    return lines[-1] if lines else f"exit code {exit_code}, no output"


def duration_text(seconds: float | None) -> str:
    """``41 s``, ``2 min 05 s``, ``1 h 02 min``; an em dash when unknown."""
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
