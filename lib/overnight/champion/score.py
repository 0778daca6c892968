"""``make score``: a submission zip scored on a BIDS release as the challenge's scorer
would, in the scorer's environment (``scorer_env``; the project's when there is none, and
the result says so).

The zip is unpacked into an empty folder (flat, as the scorer demands). Challenge 1's
windows are the release's trials, cut as the night cuts them (``overnight.windows``);
Challenge 2 asks about the same windows of every subject with an ``externalizing`` score
in ``participants.tsv`` (not scored where the column is missing). Each window goes through
``model.forward`` alone (``scorer_run.py``); the NRMSEs, the overall score (0.3 x C1 +
0.7 x C2, as the challenge weighs them), the time per window and the peak memory come back.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from overnight.champion.scorer_env import scorer_python
from overnight.champion.submission import SUBMISSION_FILE, check_python_syntax
from overnight.config import WindowsConfig
from overnight.evaluation import nrmse
from overnight.hbn.bids import read_participants
from overnight.windows.build import build_window_cache
from overnight.windows.cache import load_windows

CHALLENGE_WEIGHTS = {1: 0.3, 2: 0.7}  # the challenge's overall score
CHALLENGE_2_TARGET = "externalizing"  # participants.tsv's column Challenge 2 predicts
_SCORER_RUN = Path(__file__).resolve().parent / "scorer_run.py"


class ScoreError(Exception):
    """A submission or a release the scorer would refuse: one line that says why."""


def unpack(zip_path: Path, into: Path) -> Path:
    """Extract the flat zip ``zip_path`` into the empty folder ``into``; return it.

    Raises
    ------
    ScoreError
        Not a zip, a folder inside it, or no ``submission.py``.
    """
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = zf.namelist()
            nested = [n for n in names if "/" in n.rstrip("/") or n.endswith("/")]
            if nested:
                raise ScoreError(f"{zip_path.name} holds a folder ({nested[0]}): the scorer "
                                 "wants a flat zip; zip the files themselves (cd the folder "
                                 f"&& zip ../{zip_path.name} *)")
            if SUBMISSION_FILE not in names:
                raise ScoreError(f"{zip_path.name} has no {SUBMISSION_FILE} at its top level "
                                 f"(it holds {', '.join(names) or 'nothing'})")
            zf.extractall(into)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ScoreError(f"{zip_path}: not a readable zip ({exc})") from exc
    return into


def release_targets(bids_roots: list[Path], cache_path: Path, cfg: WindowsConfig
                    ) -> dict[str, Any]:
    """The releases' windows (cut into ``cache_path``) with each challenge's targets."""
    build_window_cache(bids_roots, cache_path, cfg)
    windows = load_windows(cache_path)
    participants = {subject: row for root in bids_roots
                    for subject, row in read_participants(root).items()}
    scores = np.array([_float(participants.get(str(s), {}).get(CHALLENGE_2_TARGET))
                       for s in windows.subject])
    rows = np.flatnonzero(np.isfinite(scores))
    has_column = any(CHALLENGE_2_TARGET in row for row in participants.values())
    return {"windows": windows, "y1": windows.rt.astype(np.float64),
            "challenge_2_rows": rows if has_column else np.empty(0, dtype=np.int64),
            "y2": scores[rows] if has_column else np.empty(0)}


def run_scorer(submission_dir: Path, windows: np.ndarray, challenge_2_rows: np.ndarray,
               sfreq_hz: float, timeout_s: float = 3600.0) -> dict[str, Any]:
    """Both challenges' predictions, in the scorer's environment when there is one.

    Raises
    ------
    ScoreError
        ``submission.py`` is not Python 3.10, or the scorer's loop fails: its one line.
    """
    try:
        check_python_syntax(submission_dir / SUBMISSION_FILE)
    except RuntimeError as exc:
        raise ScoreError(str(exc)) from exc
    python = scorer_python()
    where = "the scorer's environment" if python else \
        "the project's environment (no scorer environment: make scorer-env builds it)"
    with tempfile.TemporaryDirectory(prefix="overnight-score-") as tmp:
        inputs, out = Path(tmp) / "inputs.npz", Path(tmp) / "out.json"
        np.savez(inputs, windows=np.ascontiguousarray(windows, dtype=np.float32),
                 challenge_2_rows=challenge_2_rows.astype(np.int64))
        proc = subprocess.run(
            [str(python or sys.executable), "-I", str(_SCORER_RUN),
             str(submission_dir.resolve()), str(inputs), str(out), repr(sfreq_hz)],
            capture_output=True, text=True, timeout=timeout_s, check=False)
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            raise ScoreError(lines[-1] if lines else f"the scorer's loop exited with "
                                                     f"{proc.returncode}")
        return {**json.loads(out.read_text()), "where": where}


def score_zip(zip_path: Path, bids_roots: list[Path], cfg: WindowsConfig, work: Path
              ) -> dict[str, Any]:
    """Score ``zip_path`` on the releases ``bids_roots`` (their windows cut under ``work``)."""
    for root in bids_roots:
        if not root.is_dir():
            raise ScoreError(f"DATA={root}: no such folder (a BIDS release, as make data "
                             "fetches it)")
    submission_dir = unpack(zip_path, Path(tempfile.mkdtemp(prefix="submission-", dir=work)))
    targets = release_targets(bids_roots, work / "windows.h5", cfg)
    if len(targets["y1"]) == 0:
        raise ScoreError(f"{', '.join(map(str, bids_roots))}: no Challenge 1 trials to score")
    ran = run_scorer(submission_dir, targets["windows"].eeg, targets["challenge_2_rows"],
                     targets["windows"].sfreq_hz)
    result = {"zip": str(zip_path), "data": " ".join(map(str, bids_roots)), "where": ran["where"],
              "python": ran["python"], "torch": ran["torch"], "device": ran["device"],
              "peak_memory_mb": ran["peak_memory_mb"], "challenges": {}}
    for challenge, y_true in ((1, targets["y1"]), (2, targets["y2"])):
        answered = ran[f"challenge_{challenge}"]
        scored = len(y_true) > 1 and float(np.std(y_true)) > 0
        result["challenges"][challenge] = {
            "n_windows": len(y_true),
            "nrmse": nrmse(y_true, np.asarray(answered["predictions"])) if scored else None,
            "ms_per_window": 1e3 * answered["seconds_per_window"]}
    nrmses = [result["challenges"][c]["nrmse"] for c in CHALLENGE_WEIGHTS]
    result["overall"] = (round(sum(w * n for w, n in zip(CHALLENGE_WEIGHTS.values(), nrmses,
                                                         strict=True)), 5)
                         if all(n is not None for n in nrmses) else None)
    return result


def summary_lines(result: dict[str, Any]) -> list[str]:
    """What ``make score`` prints."""
    lines = [f"scored {result['zip']} on {result['data']} in {result['where']} "
             f"(Python {result['python']}, torch {result['torch']}, {result['device']}, "
             "batch size 1)"]
    for challenge, row in result["challenges"].items():
        score = ("not scored (no " + CHALLENGE_2_TARGET + " scores in participants.tsv)"
                 if row["nrmse"] is None else f"NRMSE {row['nrmse']:.5f}")
        lines.append(f"challenge {challenge}: {score} on {row['n_windows']} windows, "
                     f"{row['ms_per_window']:.2f} ms per window")
    overall = result["overall"]
    lines.append("overall (0.3 x C1 + 0.7 x C2): "
                 + (f"{overall:.5f}" if overall is not None else "not scored"))
    lines.append(f"peak memory of the scoring process: {result['peak_memory_mb']:.0f} MB")
    return lines


def _float(text: str | None) -> float:
    try:
        value = float(text) if text not in (None, "", "n/a") else math.nan
    except ValueError:
        return math.nan
    return value
