"""Processes as Linux's ``/proc`` shows them: whether one runs, and what runs below it.

Standard library only: the host side (the stage runner, ``make status``) uses it.
"""

from __future__ import annotations

import collections
import contextlib
import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    # a killed process not yet reaped (a zombie) still answers kill(pid, 0)
    return fields is None or fields[0] != "Z"


def descendants(pid: int) -> set[int]:
    """The processes below ``pid`` in the process tree now (children, theirs, ...)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        with contextlib.suppress(IndexError, ValueError):
            if fields is not None:
                children[int(fields[1])].append(int(stat.parent.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _stat_fields(stat: Path) -> list[str] | None:
    """The fields after ``pid (comm)`` of a ``/proc/<pid>/stat`` (state, ppid, ...); None
    when the process is gone. comm may hold spaces and parentheses: split after the last
    one."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
