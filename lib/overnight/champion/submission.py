"""The challenge submission: ``submission.py`` rendered from its template with the model
code embedded, its weights, the flat zip, and the checks that it runs as the scorer runs it.

``submission.py`` is self-contained (it needs only torch): ``templates/submission.py.j2``
is rendered with the source of ``EMBEDDED_MODULES`` (project imports stripped) and the
model's arguments. Weights files have content-addressed names (``weights_<model>_<sha12>.pt``,
a byte copy of the trained ``model.pt``).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from overnight import atomic
from overnight.evaluation import predict

log = logging.getLogger(__name__)

SUBMISSION_FILE = "submission.py"
ZIP_FILE = "submission.zip"
WEIGHTS_PREFIX = "weights_"
PREDICTION_ATOL_S = 1e-4  # fresh-process vs in-process predictions, seconds
# The project's modules the submission runs, in dependency order.
EMBEDDED_MODULES = ("overnight.units", "overnight.hbn.channels", "overnight.features.spec",
                    "overnight.models")
_TEMPLATES = Path(__file__).resolve().parent / "templates"
_FRESH_PROCESS_CHECK = Path(__file__).resolve().parent / "fresh_process_check.py"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same model always gives the same zip bytes


def build_submission(model_dir: Path, out_dir: Path) -> dict[str, str]:
    """Write submission.py, its weights and the zip into ``out_dir``; return name -> sha256.

    Deterministic: the same trained model always gives byte-identical files.
    """
    meta = json.loads((model_dir / "model.json").read_text())
    weights_sha = atomic.sha256_file(model_dir / "model.pt")
    weights_name = f"{WEIGHTS_PREFIX}{meta['model']}_{weights_sha[:12]}.pt"
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / "model.pt", out_dir / weights_name)
    (out_dir / SUBMISSION_FILE).write_text(submission_source(meta, weights_name),
                                           encoding="utf-8")
    _write_zip(out_dir / ZIP_FILE, [out_dir / SUBMISSION_FILE, out_dir / weights_name])
    return {name: atomic.sha256_file(out_dir / name)
            for name in (SUBMISSION_FILE, weights_name, ZIP_FILE)}


def submission_source(meta: dict[str, Any], weights_name: str) -> str:
    """The text of submission.py for a trained model (its ``model.json``)."""
    modules = [{"path": name.replace(".", "/") + ".py",
                "source": _embeddable_source(importlib.import_module(name)).strip("\n")}
               for name in EMBEDDED_MODULES]
    return _template().render(
        model=meta["model"], nrmse=meta["best_val_nrmse"], best_epoch=meta["best_epoch"],
        created=meta["created"], code_version=meta["code_version"], modules=modules,
        model_args=meta["model_args"], weights=weights_name,
        sfreq_hz=float(meta["model_args"].get("sfreq_hz", 100.0)))


def check_in_fresh_process(submission_dir: Path, windows: np.ndarray, expected_s: np.ndarray,
                           sfreq_hz: float, timeout_s: float = 600.0) -> None:
    """Import the submission in a new interpreter, predict, and compare with ``expected_s``.

    Raises
    ------
    RuntimeError
        The import or prediction failed, or the predictions differ.
    """
    with tempfile.TemporaryDirectory(prefix="overnight-check-") as tmp:
        windows_npy, out_npy = Path(tmp) / "windows.npy", Path(tmp) / "pred.npy"
        np.save(windows_npy, np.ascontiguousarray(windows, dtype=np.float32))
        proc = subprocess.run(
            [sys.executable, "-I", str(_FRESH_PROCESS_CHECK), str(submission_dir.resolve()),
             str(windows_npy), str(out_npy), repr(sfreq_hz)],
            cwd=tmp, capture_output=True, text=True, timeout=timeout_s, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"the submission failed in a fresh process:\n{proc.stderr[-3000:]}")
        got = np.load(out_npy)
    worst = float(np.max(np.abs(got - expected_s))) if len(got) else 0.0
    if got.shape != expected_s.shape or not worst <= PREDICTION_ATOL_S:
        raise RuntimeError(f"the submission's predictions differ from the evaluation's "
                           f"(max |diff| {worst:.3g} s > {PREDICTION_ATOL_S} s)")
    log.info("fresh-process check passed on %d windows (max |diff| %.2g s)", len(got), worst)


def predict_with_submission(submission_dir: Path, windows: np.ndarray,
                            sfreq_hz: float) -> np.ndarray:
    """The installed submission's predictions (seconds), imported as the scorer would."""
    spec = importlib.util.spec_from_file_location(f"_champion_{time.time_ns()}",
                                                  submission_dir / SUBMISSION_FILE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {submission_dir / SUBMISSION_FILE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Submission(sfreq_hz, "cpu").get_model_challenge_1()
    return predict(model, windows)


def _template() -> jinja2.Template:
    # Python source, not HTML: no autoescaping; values go in through repr().
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["pyrepr"] = repr
    return env.get_template("submission.py.j2")


def _embeddable_source(module: Any) -> str:
    """A module's source without its ``__future__`` and project imports (the template's
    header and the modules embedded before it give those names)."""
    source = inspect.getsource(module)
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "__future__" or node.module.split(".")[0] == "overnight"):
            drop.update(range(node.lineno - 1, node.end_lineno or node.lineno))
    return "".join(line for i, line in enumerate(lines) if i not in drop)


def _write_zip(path: Path, files: list[Path]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in files:
            info = zipfile.ZipInfo(file.name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, file.read_bytes())
