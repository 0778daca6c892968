"""Runs one stage of the chain: its command, its log, its status record.

The command is whatever the Makefile's ``JOB`` prefix makes of the job (a local
Python today, a container later); the runner only times it, tees its output into
``<work>/logs/<stage>.log`` and writes ``<work>/status/<stage>.json``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from overnight import atomic


def run_stage(stage: str, command: list[str], work_dir: Path) -> int:
    """Run ``command`` as stage ``stage``; return its exit code."""
    if not command:
        raise ValueError("run_stage needs a command to run")
    log_path = work_dir / "logs" / f"{stage}.log"
    status_path = work_dir / "status" / f"{stage}.json"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    status: dict[str, Any] = {
        "stage": stage, "status": "running", "start": _iso(started), "end": None,
        "seconds": None, "exit_code": None, "command": command,
        "log": str(log_path.relative_to(work_dir)),
    }
    atomic.write_json(status_path, status)
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"==== {_iso(started)} stage {stage} started: {' '.join(command)}\n")
        log.flush()
        exit_code = _tee(command, log)
        ended = time.time()
        log.write(f"==== {_iso(ended)} stage {stage} exited {exit_code} "
                  f"after {ended - started:.1f} s\n")
    status.update(status="ok" if exit_code == 0 else "failed", end=_iso(ended),
                  seconds=round(ended - started, 2), exit_code=exit_code)
    atomic.write_json(status_path, status)
    return exit_code


def _tee(command: list[str], log: Any) -> int:
    """Copy the command's output, line by line, to our stdout and to the log."""
    try:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1, errors="replace")
    except OSError as exc:
        message = f"cannot start {command[0]!r}: {exc}\n"
        sys.stdout.write(message)
        log.write(message)
        return 127
    assert proc.stdout is not None  # guaranteed by stdout=PIPE
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        log.write(line)
        log.flush()
    return proc.wait()


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))
