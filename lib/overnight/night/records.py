"""The records a night keeps: ``status/<stage>.json`` per stage and ``night.json``.

The one module that writes and reads them; the driver, the stage runner, ``make status``
and the report all go through it. Standard library only.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from overnight import atomic
from overnight.layout import NightFolder, stage_rank

RUNNING, OK, FAILED, TIMED_OUT, INTERRUPTED, UNREADABLE = (
    "running", "ok", "failed", "timed out", "interrupted", "unreadable")
FAILURES = (FAILED, TIMED_OUT)  # a stage stopped at its time limit failed too
_LOCK_HOLDER = re.compile(r"pid (?P<pid>\d+), night \S+ in (?P<work>.+), started ")


def timestamp(t: float) -> str:
    """Local time as ``YYYY-MM-DDTHH:MM:SS``, as every record writes it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t))


def lock_holder_line(pid: int, date: str, work_dir: Path, started: float) -> str:
    """What the driver writes into the nights' lock while it holds it."""
    return f"pid {pid}, night {date} in {work_dir}, started {timestamp(started)}\n"


def read_lock_holder(text: str) -> tuple[int, Path] | None:
    """The pid and the night folder of a ``lock_holder_line``, or None."""
    found = _LOCK_HOLDER.search(text)
    return (int(found["pid"]), Path(found["work"])) if found else None


def read_record(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when the file is missing, unreadable or holds
    something else."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_stage(folder: NightFolder, record: dict[str, Any]) -> None:
    """Write (atomically) the status record of ``record["stage"]``."""
    atomic.write_json(folder.status(record["stage"]), record)


def read_stage(folder: NightFolder, stage: str) -> dict[str, Any] | None:
    """One stage's status record, or None."""
    return read_record(folder.status(stage))


def stage_records(folder: NightFolder) -> list[dict[str, Any]]:
    """Every status record of the folder, in chain order. A file that cannot be read is a
    record with status ``unreadable`` and a ``note`` saying why."""
    records = []
    for path in folder.status_dir.glob("*.json"):
        record = read_record(path)
        if record is None:
            record = {"stage": path.stem, "status": UNREADABLE,
                      "note": f"{path.name} is missing, unreadable or not a JSON object"}
        record.setdefault("stage", path.stem)
        records.append(record)
    return sorted(records, key=lambda r: stage_rank(str(r["stage"])))


def failed_stages(folder: NightFolder) -> list[dict[str, Any]]:
    """The records of the stages that failed (timed out included)."""
    return [r for r in stage_records(folder) if r.get("status") in FAILURES]


def mark_interrupted(folder: NightFolder) -> list[str]:
    """Stages left ``running`` by a killed night become ``interrupted`` (call it only while
    holding the night's lock: then none can be running). Returns their names."""
    marked = []
    for record in stage_records(folder):
        if record.get("status") == RUNNING:
            record.update(status=INTERRUPTED,
                          error="interrupted: the night was killed during this stage")
            write_stage(folder, record)
            marked.append(str(record["stage"]))
    return marked


def mark_reused(folder: NightFolder, stage: str) -> None:
    """Note that this attempt reused the stage's output, which make found up to date; the
    record keeps when the stage really ran."""
    record = read_stage(folder, stage) or {"stage": stage, "status": OK, "start": None,
                                            "end": None, "seconds": None, "exit_code": 0,
                                            "error": None, "log": None}
    record.update(reused=True, reused_at=timestamp(time.time()))
    write_stage(folder, record)


def read_night(folder: NightFolder) -> dict[str, Any] | None:
    """``night.json``: the attempts and the outcome, or None."""
    return read_record(folder.night_record)


def write_night(folder: NightFolder, record: dict[str, Any]) -> None:
    atomic.write_json(folder.night_record, record)
