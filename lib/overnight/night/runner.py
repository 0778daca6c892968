"""Runs one stage of the chain: its command, its log, its status record.

The command is whatever the Makefile's ``JOB`` prefix makes of the job (a local Python, or
``docker run ... python`` with ``RUNNER=docker``); the runner only times it, copies its
output to our stdout and, each line stamped with the time, into the stage's log, and writes
its status record (``night.records``): start, end, seconds, exit code and, when it failed,
the error line read from its output (the exception, not make's echo of it).

Standard library only: it runs on the host, also when the jobs run in containers.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from overnight.layout import NightFolder
from overnight.night.records import FAILED, OK, RUNNING, timestamp, write_stage

BANNER = "=" * 78
_TAIL_LINES = 200  # lines of output kept to find the error of a failed stage
# "ValueError: ...", "torch.OutOfMemoryError: ...", "numba.core.errors.TypingError: ..."
_ERROR_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Za-z_]\w*(?:Error|Exception|Exit|"
                         r"Interrupt|Fault)\b:?.*")
_STAMPED = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")
_MAKE_LINE = re.compile(r"^make(\[\d+\])?: ")  # make's own "*** [...] Error 1" and the like
_LOG_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} \w+\s+\S+: ")  # cli.setup
# What docker's own exit codes mean, and the fix (its containers' codes pass through).
_DOCKER_HINTS = {
    125: "docker could not start the container: is the image built (make image) and the "
         "daemon running?",
    126: "docker could not run the command inside the container",
    127: "docker found no such command inside the container",
}


def run_stage(stage: str, command: list[str], folder: NightFolder,
              prepare: Callable[[Callable[[str], None]], None] | None = None) -> int:
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

    Returns
    -------
    int
        The command's exit code; 127 when it cannot be started.

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
        exit_code, tail = _prepare(prepare, log)
        if exit_code == 0:
            exit_code, tail = run_command(command, lambda line: _write(log, line))
        ended = time.time()
        error = None if exit_code == 0 else _error_line(tail, command, exit_code)
        verdict = "ok" if exit_code == 0 else f"FAILED, exit code {exit_code}"
        _banner(log, f"{timestamp(ended)}  stage {stage} {verdict} after {ended - started:.1f} s",
                *([f"error: {error}"] if error else []))
    status.update(status=OK if exit_code == 0 else FAILED, end=timestamp(ended),
                  seconds=round(ended - started, 2), exit_code=exit_code, error=error)
    write_stage(folder, status)
    return exit_code


def _prepare(prepare: Callable[[Callable[[str], None]], None] | None,
             log: TextIO) -> tuple[int, list[str]]:
    if prepare is None:
        return 0, []
    try:
        prepare(lambda text: _write(log, text.rstrip("\n") + "\n"))
    except Exception as exc:  # any failure to prepare fails the stage, with its reason
        message = f"{type(exc).__name__}: {exc}"
        _write(log, message + "\n")
        return 1, [message]
    return 0, []


def run_command(command: list[str], sink: Callable[[str], Any]) -> tuple[int, list[str]]:
    """Run ``command`` and hand each line of its output (stdout and stderr) to ``sink``.

    Returns the exit code (127 when it cannot be started) and the last lines of output. A
    carriage return (a progress bar redrawing) ends a line too, so every update of a bar is
    a line of its own.
    """
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, errors="replace")
    except OSError as exc:
        message = f"cannot start {command[0]!r}: {exc}"
        if command[0] == "docker":
            message += " (install Docker, or run with RUNNER=local)"
        sink(message + "\n")
        return 127, [message]
    assert proc.stdout is not None  # guaranteed by stdout=PIPE
    for line in proc.stdout:
        sink(line)
        tail.append(line.rstrip("\n"))
    return proc.wait(), list(tail)


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
    hint = _DOCKER_HINTS.get(exit_code) if command[0] == "docker" else None
    if hint:
        return hint
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
