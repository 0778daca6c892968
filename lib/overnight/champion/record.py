"""The champion record and the install: ``champion.json`` and the swap of the submission.

The submission folder holds ``submission.py``, the weights it loads, ``submission.zip``
(the flat zip to upload) and ``champion.json`` (the model, its score, the date, the sha256
of every file, and earlier champions). Nothing is replaced before the new submission has
been imported in a fresh Python process, the way the scorer does it, and its predictions
match the evaluation's. Weights files have content-addressed names, so ``submission.py``
(moved in last but one, before ``champion.json``) always points at a weights file that
exists.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from overnight import atomic
from overnight.champion.submission import (
    SUBMISSION_FILE,
    WEIGHTS_PREFIX,
    ZIP_FILE,
    build_submission,
    check_in_fresh_process,
)

CHAMPION_FILE = "champion.json"
_STAGING_PREFIX = ".staging-"


def read_champion(submission_dir: Path) -> dict[str, Any] | None:
    """The champion record, or None when there is no champion yet."""
    path = submission_dir / CHAMPION_FILE
    return json.loads(path.read_text()) if path.exists() else None


def verify_files(submission_dir: Path, record: dict[str, Any]) -> str | None:
    """None when every file in the record is there with its recorded sha256, else why not."""
    for name, digest in record.get("files", {}).items():
        path = submission_dir / name
        if not path.exists():
            return f"{name} is missing"
        if atomic.sha256_file(path) != digest:
            return f"{name} does not match its sha256 in {CHAMPION_FILE}"
    return None


def install(model_dir: Path, submission_dir: Path, check_windows: np.ndarray,
            expected_s: np.ndarray, sfreq_hz: float, record: dict[str, Any]) -> dict[str, Any]:
    """Build, check in a fresh process, then swap the submission in and record the champion.

    ``record`` holds the new champion's details (model, nrmse, reason, ...); the file
    hashes, the date and the list of previous champions are added here. Returns the
    full record written to ``champion.json``.
    """
    submission_dir.mkdir(parents=True, exist_ok=True)
    for leftover in submission_dir.glob(f"{_STAGING_PREFIX}*"):  # a run killed mid-install
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=submission_dir))
    try:
        files = build_submission(model_dir, staging)
        check_in_fresh_process(staging, check_windows, expected_s, sfreq_hz)
        previous = read_champion(submission_dir)
        weights_name = next(n for n in files if n.startswith(WEIGHTS_PREFIX))
        # Order matters: the new weights first (a new name), then the zip, then
        # submission.py, which switches to them; champion.json records it last.
        for name in (weights_name, ZIP_FILE, SUBMISSION_FILE):
            (staging / name).replace(submission_dir / name)
        full = {**record, "files": files, "date": time.strftime("%Y-%m-%d"),
                "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "weights_sha256": atomic.sha256_file(model_dir / "model.pt"),
                "previous": _history(previous)}
        atomic.write_json(submission_dir / CHAMPION_FILE, full)
        _remove_unreferenced_weights(submission_dir, weights_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    problem = verify_files(submission_dir, full)
    if problem:
        raise RuntimeError(f"after installing the submission: {problem}")
    return full


def _history(previous: dict[str, Any] | None) -> list[dict[str, Any]]:
    if previous is None:
        return []
    older = previous.get("previous", [])
    entry = {k: v for k, v in previous.items() if k != "previous"}
    return [entry, *older]


def _remove_unreferenced_weights(submission_dir: Path, keep: str) -> None:
    for path in submission_dir.glob(f"{WEIGHTS_PREFIX}*.pt"):
        if path.name != keep:
            path.unlink()
