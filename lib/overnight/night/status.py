"""The night at a glance (``make status``) and its log as it grows (``make logs``).

Everything is read from the night's folder (``night.records``: the night's record and the
stages' status records, and the stage logs; the search's ``search/progress.json``); GPU
memory and use come from ``rocm-smi`` or ``nvidia-smi`` when one is installed. Nothing here
writes.

Standard library only: it runs on the host, also when the jobs run in containers.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from overnight.layout import SEARCH_STAGE, NightFolder
from overnight.night import records
from overnight.night.processes import process_alive
from overnight.night.runner import duration_text

LAST_LINES = 8  # log lines shown under the running (or last) stage
MAX_LINE_CHARS = 160  # longer log lines (a whole config) are cut in the summary
# A progress bar ("45%|####  | 9/20") or an epoch line of the training log.
_PROGRESS = re.compile(r"\d+%\||\bepoch \d+/\d+")
_GPU_QUERIES = (
    ("nvidia-smi", ["nvidia-smi", "--query-gpu=index,name,utilization.gpu,memory.used,"
                    "memory.total", "--format=csv,noheader"]),
    ("rocm-smi", ["rocm-smi", "--showuse", "--showmemuse", "--csv"]),
)


def night_status(work_dir: str | Path, now: float | None = None,
                 lock_path: str | Path | None = None) -> dict[str, Any]:
    """What the night in ``work_dir`` is doing: its stages, the running one, its progress.

    With ``lock_path``, a stage still marked running while no live process of this night
    holds the lock is reported as interrupted (a SIGKILL, a reboot, the OOM killer), with
    the time of its last sign of life.

    Parameters
    ----------
    work_dir : str or Path
        The night's folder (``runs/<date>``).
    now : float, optional
        The current time (seconds since the epoch); default ``time.time()``.
    lock_path : str or Path, optional
        The nights' lock file (``make overnight``'s ``LOCK``).

    Returns
    -------
    dict
        ``work_dir``, ``exists``, ``night`` (night.json or None), ``stages`` (status
        records in chain order), ``current`` (the running stage, else the last one to
        start, or None), ``elapsed_s`` (of ``current``), ``progress`` (its last progress
        line or None), ``last_lines`` (of its log), ``interrupted`` (None, or the
        stage a dead night left running and ``stopped``, its last sign of life) and
        ``search`` (the search's progress record, or None).

    Raises
    ------
    TypeError
        ``work_dir`` is not a str or Path.
    """
    if not isinstance(work_dir, (str, Path)):
        raise TypeError(f"work_dir must be a str or Path, got {type(work_dir).__name__}")
    work = Path(work_dir)
    folder = NightFolder(work)
    now = time.time() if now is None else now
    stages = [s for s in records.stage_records(folder) if s.get("status") != records.UNREADABLE]
    running = [s for s in stages if s.get("status") == "running"]
    started = [s for s in stages if s.get("start")]
    current = running[-1] if running else max(started, key=lambda s: s["start"], default=None)
    lines = _log_lines(work, current) if current else []
    interrupted = None
    if running and lock_path is not None and not night_alive(Path(lock_path), work):
        interrupted = {"stage": running[-1].get("stage"),
                       "stopped": _last_sign_of_life(work, running[-1])}
    return {
        "work_dir": str(work), "exists": work.is_dir(), "night": records.read_night(folder),
        "stages": stages, "current": current, "interrupted": interrupted,
        "elapsed_s": _elapsed(current, now) if current else None,
        "progress": next((line for line in reversed(lines) if _PROGRESS.search(line)), None),
        "last_lines": lines[-LAST_LINES:],
        "search": records.read_record(folder.search_progress), "now": now,
    }


def format_status(status: dict[str, Any], gpu: str | None = None) -> str:
    """``night_status`` (and the GPU lines) as the text ``make status`` prints."""
    if not status["exists"]:
        return (f"no night in {status['work_dir']} yet (make overnight starts one; WORK=... "
                "shows another)")
    out = [f"night folder {status['work_dir']}"]
    night = status["night"]
    interrupted = status.get("interrupted")
    if night:
        attempts = night.get("attempts") or [{}]
        state = "interrupted" if interrupted else night.get("state")
        out.append(f"  night {night.get('date')}: {state}, attempt "
                   f"{len(attempts)} started {attempts[-1].get('start')}")
        if night.get("state") == "finished":
            out.append(f"  exit code {night.get('exit_code')}: {night.get('outcome')}")
            out += [f"    {line}" for line in night.get("details") or []]
    out.append("  stages:")
    width = max((len(str(s.get("stage", "?"))) for s in status["stages"]), default=0)
    for stage in status["stages"]:
        duration = (f"{stage['seconds']:.0f} s" if isinstance(stage.get("seconds"),
                                                              (int, float)) else "")
        error = f"  {stage['error']}" if stage.get("error") else ""
        shown = stage.get("status", "?")
        if interrupted and shown == records.RUNNING:
            shown = records.INTERRUPTED
        out.append(f"    {stage.get('stage', '?'):<{width}}  {shown:<12} "
                   f"{stage.get('start') or '':<20} {duration:>7}{error}")
    current = status["current"]
    if interrupted:
        out.append(f"  interrupted at {interrupted['stage']}: no process of this night is "
                   f"alive (last sign of life {interrupted['stopped'] or 'unknown'}); "
                   "make overnight resumes it")
    elif current:
        verb = "running" if current.get("status") == "running" else "last stage"
        out.append(f"  {verb}: {current.get('stage')} for {duration_text(status['elapsed_s'])}")
        if status["progress"]:
            out.append(f"  progress: {status['progress']}")
    if status.get("search"):
        out.append(search_line(status["search"], status["stages"],
                               status.get("now") or time.time()))
    if gpu:
        out.append("  GPU:")
        out += [f"    {line}" for line in gpu.splitlines()]
    if status["last_lines"]:
        out.append(f"  last lines of {current.get('log')}:")
        out += [f"    {_cut(line)}" for line in status["last_lines"]]
    return "\n".join(out)


def search_line(progress: dict[str, Any], stages: list[dict[str, Any]],
                now: float) -> str:
    """The search's study in one line: trials done, running, best so far, time left."""
    counts = progress.get("counts") if isinstance(progress.get("counts"), dict) else {}
    done = ", ".join(f"{counts[k]} {k}" for k in ("complete", "pruned", "failed",
                                                   "interrupted") if counts.get(k))
    best = progress.get("best") if isinstance(progress.get("best"), dict) else None
    running = any(s.get("stage") == SEARCH_STAGE and s.get("status") == records.RUNNING
                  for s in stages)
    end = progress.get("end")
    left = (f"{duration_text(max(0.0, end - now))} left (until {progress.get('end_text')})"
            if running and isinstance(end, (int, float)) else "not running")
    return (f"  search: study {progress.get('study')}: {done or 'no trial finished'}"
            f" ({progress.get('tonight', 0)} tonight), {counts.get('running', 0)} running; "
            + (f"best tune NRMSE {best['tune_nrmse']:.4f} (trial {best['number']})"
               if best and isinstance(best.get("tune_nrmse"), (int, float)) else "no best yet")
            + f"; {left}")


def gpu_usage(run: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = None,
              which: Callable[[str], str | None] = shutil.which) -> str | None:
    """GPU use and memory from ``nvidia-smi`` or ``rocm-smi``; None when neither answers."""
    for tool, command in _GPU_QUERIES:
        if which(tool) is None:
            continue
        try:
            done = (run or _query)(command)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip():
            return f"{tool}:\n{done.stdout.strip()}"
    return None


def _query(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)


def follow(work_dir: str | Path, out: TextIO = sys.stdout, poll_s: float = 0.5,
           stop: Callable[[], bool] | None = None) -> None:
    """Print ``night.log`` from its last lines on, as it grows, until the night finishes.

    ``stop`` (for tests) ends the loop early when it returns True.
    """
    folder = NightFolder(Path(work_dir))
    path = folder.night_log
    if not folder.root.is_dir():
        out.write(f"no night in {work_dir} yet (make overnight starts one)\n")
        return
    position = _start_position(path)
    while True:
        if path.exists():
            with open(path, encoding="utf-8", errors="replace") as log:
                log.seek(position)
                out.write(log.read())
                out.flush()
                position = log.tell()
        night = records.read_night(folder)
        if (night and night.get("state") == "finished") or (stop and stop()):
            return
        time.sleep(poll_s)


def _start_position(path: Path) -> int:
    """Where to start reading: about the last LAST_LINES lines of the log."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    cut = len(data)
    for _ in range(LAST_LINES + 1):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            return 0
    return cut + 1


def _log_lines(work: Path, stage: dict[str, Any]) -> list[str]:
    log = stage.get("log")
    if not isinstance(log, str):
        return []
    try:
        text = (work / log).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip() and not line.startswith("====")]


def night_alive(lock_path: Path, work_dir: Path) -> bool:
    """Whether a live night driver holds the lock for ``work_dir``.

    The driver writes its pid and night folder into the lock while it holds it
    (``records.lock_holder_line``); the line stays when it dies. Reading it (rather than
    trying the lock) can never keep a night from starting.
    """
    try:
        holder = lock_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    found = records.read_lock_holder(holder)
    if found is None or not process_alive(found[0]):
        return False
    return found[1].resolve() == work_dir.resolve()


def _last_sign_of_life(work: Path, stage: dict[str, Any]) -> str | None:
    """When the stage last wrote its log (else its status record), local time."""
    candidates = [work / str(stage.get("log")), work / "status" / f"{stage.get('stage')}.json"]
    times = [p.stat().st_mtime for p in candidates if stage.get("log") and p.is_file()]
    return records.timestamp(max(times)) if times else None


def _elapsed(stage: dict[str, Any], now: float) -> float | None:
    if isinstance(stage.get("seconds"), (int, float)):
        return float(stage["seconds"])
    try:
        start = datetime.fromisoformat(stage["start"]).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, now - start)


def _cut(line: str) -> str:
    return line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS - 1] + "…"

