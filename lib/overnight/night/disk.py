"""Disk space before the long stages: what the night will write, from its preflight, against
what the file systems of the night folder, the reports and the submission hold.

The preflight has just run every job on a slice of tonight's subjects, so its files measure
what one subject costs (window and feature caches), what the models weigh (their size does
not grow with the data) and how large a report and a submission are. The night's estimate
scales the per-subject part to every subject of tonight's data, then adds ``MARGIN``.

Standard library only: the driver runs it on the host.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from overnight.atomic import format_bytes
from overnight.layout import NightFolder

# Estimates are from a slice of a few subjects; subjects differ in how many runs and trials
# they have, and logs, checkpoints and the report's plots come on top.
MARGIN = 1.5
SLACK_BYTES = 200_000_000  # logs, status records, Numba's cache, temporary files


def night_needs(preflight: NightFolder, n_subjects: int) -> dict[str, int]:
    """Bytes the night will write, by destination: ``work``, ``reports``, ``submission``.

    Raises
    ------
    FileNotFoundError
        The preflight's split or window cache is missing (it did not finish).
    """
    split = json.loads(preflight.split.read_text())
    n_preflight = max(1, len(split["train"]) + len(split["val"]))
    per_subject = _size(preflight.windows) + _size(preflight.features)
    models = _size(preflight.models)
    work = n_subjects * per_subject / n_preflight + models
    reports = 2 * _size(preflight.reports)  # <date>.html and latest.html
    submission = 2 * max((_size(p) for p in preflight.models.glob("*/model.pt")), default=0)
    return {name: int(MARGIN * value + SLACK_BYTES)
            for name, value in (("work", work), ("reports", reports),
                                ("submission", submission))}


def shortfalls(needs: Mapping[str, int], folders: Mapping[str, Path]) -> list[str]:
    """One line per file system that lacks the space the night needs there (the needs of
    destinations that share a file system add up); empty when every one has enough."""
    by_device: dict[int, tuple[Path, list[str], int]] = {}
    for name, need in needs.items():
        anchor = _existing(folders[name])
        device = os.stat(anchor).st_dev
        where, names, total = by_device.get(device, (anchor, [], 0))
        by_device[device] = (where, [*names, f"{name} {folders[name]}"], total + need)
    lines = []
    for where, names, total in by_device.values():
        free = shutil.disk_usage(where).free
        if free < total:
            lines.append(f"the night will write about {format_bytes(total)} to the file system "
                         f"of {where} ({', '.join(names)}), and {format_bytes(free)} is free "
                         "there")
    return lines


def _existing(path: Path) -> Path:
    """``path`` or its nearest folder that exists (a night folder is made as it runs)."""
    return next(p for p in (path, *path.parents) if p.exists())


def _size(path: Path) -> int:
    """Bytes of a file, or of every file below a folder; 0 when missing."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0
