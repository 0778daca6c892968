"""The challenge submission: ``submission.py`` rendered from its template with the model
code embedded, its weights, the flat zip, and the checks that it runs as the scorer runs it.

``submission.py`` is self-contained (it needs only torch, and braindecode for EEGNeX):
``templates/submission.py.j2`` is rendered with the model's file and the project modules it
needs (``embedding.embedded_modules``) and the model's arguments. Weights files have
content-addressed names (``weights_<model>_<sha12>.pt``, a byte copy of the trained
``model.pt``).
"""

from __future__ import annotations

import ast
import importlib.util
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
from overnight.champion.embedding import embedded_modules
from overnight.champion.scorer_env import (
    SCORER_PYTHON_TEXT,
    SCORER_PYTHON_VERSION,
    scorer_python,
)
from overnight.evaluation import predict, read_model_record, trained_model_class
from overnight.hbn.channels import index_of
from overnight.hbn.events import PLAUSIBLE_RT_S
from overnight.models.declaration import BLEND_NAME

log = logging.getLogger(__name__)

SUBMISSION_FILE = "submission.py"
ZIP_FILE = "submission.zip"
WEIGHTS_PREFIX = "weights_"
PREDICTION_ATOL_S = 1e-4  # fresh-process vs in-process predictions, seconds
BATCH_ONE_ATOL_S = 1e-5  # one window at a time (the scorer's loop) vs batched, seconds
BATCH_ONE_WINDOWS = 64  # windows the check feeds one at a time, and times
_OPTIONAL_LIBRARIES = ("braindecode",)  # a submission may need them; the scorer has them
# Challenge 2 (the externalizing factor) is not trained here, but the scorer calls it in the
# same run: the submission answers this constant, the factor's population mean (HBN's
# psychopathology factors are standardised scores); the training mean is not read.
CHALLENGE_2_CONSTANT = 0.0
PROBE_WINDOWS = 8  # windows per probe
PROBE_CHANNEL = index_of("CPz")  # the channel a probe breaks: one the features read
_TEMPLATES = Path(__file__).resolve().parent / "templates"
_FRESH_PROCESS_CHECK = Path(__file__).resolve().parent / "fresh_process_check.py"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same model always gives the same zip bytes


def build_submission(model_dir: Path, out_dir: Path) -> dict[str, str]:
    """Write submission.py, its weights and the zip into ``out_dir``; return name -> sha256.

    Deterministic: the same trained model always gives byte-identical files.
    """
    meta = read_model_record(model_dir)
    weights_sha = atomic.sha256_file(model_dir / "model.pt")
    weights_name = f"{WEIGHTS_PREFIX}{meta['model']}_{weights_sha[:12]}.pt"
    source = submission_source(model_dir, meta, weights_name)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / "model.pt", out_dir / weights_name)
    (out_dir / SUBMISSION_FILE).write_text(source, encoding="utf-8")
    _write_zip(out_dir / ZIP_FILE, [out_dir / SUBMISSION_FILE, out_dir / weights_name])
    return {name: atomic.sha256_file(out_dir / name)
            for name in (SUBMISSION_FILE, weights_name, ZIP_FILE)}


def submission_source(model_dir: Path, meta: dict[str, Any], weights_name: str) -> str:
    """The text of submission.py for the trained model in ``model_dir`` (``meta``: its
    ``model.json``): one model, or a blend of several, each with its class and arguments."""
    records = meta["members"] if meta["model"] == BLEND_NAME else [meta]
    models = [trained_model_class(model_dir, record) for record in records]
    extras = sorted({m.cls.extra_requirement for m in models if m.cls.extra_requirement})
    modules = [{"path": m.label, "source": m.source}
               for m in embedded_modules(list(dict.fromkeys(m.source for m in models)), extras)]
    members = [{"class_name": model.entry.class_name, "args": record["model_args"],
                "name": record.get("name", meta["model"]), "weight": record.get("weight")}
               for model, record in zip(models, records, strict=True)]
    return _template().render(
        model=meta["model"], nrmse=meta["best_tune_nrmse"], best_epoch=meta["best_epoch"],
        created=meta["created"], code_version=meta["code_version"], modules=modules,
        members=members, blend=meta["model"] == BLEND_NAME,
        weights=weights_name, challenge_2_constant=CHALLENGE_2_CONSTANT,
        extra_requirement=" and ".join(extras),
        sfreq_hz=float(meta["model_args"].get("sfreq_hz", 100.0)))


def check_in_fresh_process(submission_dir: Path, windows: np.ndarray, expected_s: np.ndarray,
                           sfreq_hz: float, timeout_s: float = 600.0) -> dict[str, Any]:
    """Run the submission as the scorer does, in a new interpreter (the scorer's
    environment when ``make scorer-env`` built it), and compare with ``expected_s``.

    ``submission.py`` must parse as Python 3.10; a fresh process imports it, predicts the
    windows in batches (they must equal ``expected_s``) and the first ``BATCH_ONE_WINDOWS``
    one at a time as the scorer's loop does (they must equal the batched ones), times that
    loop, answers the probes (``probe_windows``) and calls the Challenge 2 model. Returns
    what was checked where: the environment, the timings (``ms_per_window``), the largest
    differences.

    Raises
    ------
    RuntimeError
        Any of those fails: the message's last line says which.
    """
    check_python_syntax(submission_dir / SUBMISSION_FILE)
    windows = np.ascontiguousarray(windows, dtype=np.float32)
    python, where = _check_interpreter()
    with tempfile.TemporaryDirectory(prefix="overnight-check-") as tmp:
        inputs_npz = Path(tmp) / "inputs.npz"
        np.savez(inputs_npz, windows=windows, **probe_windows(windows))
        proc = _run_check(python, submission_dir, inputs_npz, sfreq_hz, timeout_s)
        if python != Path(sys.executable) and _missing_extra(proc.stderr):
            where = (f"the project's environment: the scorer's has no "
                     f"{_missing_extra(proc.stderr)}, so this submission was not checked "
                     "under the scorer's versions")
            python = Path(sys.executable)
            proc = _run_check(python, submission_dir, inputs_npz, sfreq_hz, timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(f"the submission failed in a fresh process ({where}):\n"
                               f"{proc.stderr[-3000:]}")
        with np.load(Path(tmp) / "out.npz") as out:
            got = {name: out[name] for name in out.files}
        report = json.loads((Path(tmp) / "out.json").read_text())
    report.update(where=where, n_windows=len(windows),
                  max_diff_s=_check_predictions(got, expected_s, len(windows)))
    log.info("fresh-process check passed (%s: Python %s, torch %s) on %d windows (max |diff| "
             "%.2g s), %d one at a time (max |diff| %.2g s, %.1f ms per window on one "
             "thread), %d probes", where, report["environment"]["python"],
             report["environment"]["torch"], len(windows), report["max_diff_s"]["batched"],
             report["n_one_at_a_time"], report["max_diff_s"]["one_at_a_time"],
             report["ms_per_window"]["cpu_1_thread"], len(got))
    return report


def check_python_syntax(path: Path) -> None:
    """``path`` parses as Python 3.10, the scorer's (a 3.11 construct fails here).

    Raises
    ------
    RuntimeError
        It does not: the line and what is wrong.
    """
    try:
        ast.parse(path.read_text(encoding="utf-8"), str(path),
                  feature_version=SCORER_PYTHON_VERSION)
    except SyntaxError as exc:
        raise RuntimeError(f"{path.name} is not Python {SCORER_PYTHON_TEXT} (the scorer's): "
                           f"line {exc.lineno}: {exc.msg}") from exc


def _check_interpreter() -> tuple[Path, str]:
    python = scorer_python()
    if python is None:
        return Path(sys.executable), ("the project's environment (no scorer environment: "
                                      "make scorer-env builds it)")
    return python, "the scorer's environment"


def _run_check(python: Path, submission_dir: Path, inputs_npz: Path, sfreq_hz: float,
               timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-I", str(_FRESH_PROCESS_CHECK), str(submission_dir.resolve()),
         str(inputs_npz), str(inputs_npz.with_name("out.npz")), repr(sfreq_hz),
         str(BATCH_ONE_WINDOWS)],
        cwd=inputs_npz.parent, capture_output=True, text=True, timeout=timeout_s, check=False)


def _missing_extra(stderr: str) -> str | None:
    """The optional library (braindecode) the scorer's environment lacks, if that is why
    the check failed there."""
    return next((name for name in _OPTIONAL_LIBRARIES
                 if f"No module named '{name}'" in stderr), None)


def _check_predictions(got: dict[str, np.ndarray], expected_s: np.ndarray,
                       n_windows: int) -> dict[str, float]:
    """Compare the fresh process's answers: batched with ``expected_s``, one at a time with
    batched, Challenge 2's shape, every probe finite and plausible."""
    predicted = got.pop("windows")
    worst = float(np.max(np.abs(predicted - expected_s))) if len(predicted) else 0.0
    if predicted.shape != expected_s.shape or not worst <= PREDICTION_ATOL_S:
        raise RuntimeError(f"the submission's predictions differ from the evaluation's "
                           f"(max |diff| {worst:.3g} s > {PREDICTION_ATOL_S} s)")
    one = got.pop("one_at_a_time")
    worst_one = float(np.max(np.abs(one - predicted[:len(one)]))) if len(one) else 0.0
    if not worst_one <= BATCH_ONE_ATOL_S:
        raise RuntimeError(f"one window at a time, as the scorer calls it, the submission "
                           f"answers differently from batches (max |diff| {worst_one:.3g} s "
                           f"> {BATCH_ONE_ATOL_S} s over {len(one)} windows)")
    challenge_2 = got.pop("challenge_2")
    challenge_2_one = got.pop("challenge_2_one_at_a_time")
    if challenge_2.shape != (n_windows,) or not np.isfinite(challenge_2).all() \
            or not np.isfinite(challenge_2_one).all():
        raise RuntimeError("the submission's Challenge 2 model must answer one finite number "
                           f"per window, got shape {challenge_2.shape}, "
                           f"{int(np.isfinite(challenge_2).sum())} finite")
    low, high = PLAUSIBLE_RT_S  # a prediction outside is nonsense, whatever the input
    for name, rt_s in got.items():
        finite = rt_s[np.isfinite(rt_s)]
        if len(finite) < len(rt_s) or not ((finite >= low).all() and (finite <= high).all()):
            spread = f"{finite.min():.3g}..{finite.max():.3g} s" if len(finite) else "nothing"
            raise RuntimeError(f"probe {name!r}: the submission predicts {spread} and "
                               f"{len(rt_s) - len(finite)} non-finite value(s) for "
                               f"{len(rt_s)} windows; every prediction must be finite and in "
                               f"{low}..{high} s")
    return {"batched": worst, "one_at_a_time": worst_one}


def probe_windows(windows: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs a scorer may send that no training window looks like, by name.

    White noise at EEG scale in volts and the same in microvolts, real windows with one
    channel NaN or flat, and all-zero windows; float32, ``PROBE_WINDOWS`` each.
    """
    n_chans, n_times = windows.shape[1:]
    noise_v = np.random.default_rng(0).normal(0.0, 1e-5, (PROBE_WINDOWS, n_chans, n_times))
    real = np.resize(windows, (PROBE_WINDOWS, n_chans, n_times)).copy()
    nan_channel, flat_channel = real.copy(), real.copy()
    nan_channel[:, PROBE_CHANNEL] = np.nan
    flat_channel[:, PROBE_CHANNEL] = 0.0
    probes = {"white noise (volts)": noise_v, "white noise (microvolts)": noise_v * 1e6,
              "one NaN channel": nan_channel, "one flat channel": flat_channel,
              "all-zero windows": np.zeros_like(real)}
    return {name: probe.astype(np.float32) for name, probe in probes.items()}


def predict_with_submission(submission_dir: Path, windows: np.ndarray,
                            sfreq_hz: float) -> np.ndarray:
    """The installed submission's predictions (seconds), imported as the scorer would: as a
    module of its own, in ``sys.modules`` while it runs (its dataclasses look it up there)."""
    name = f"_champion_{time.time_ns()}"
    spec = importlib.util.spec_from_file_location(name, submission_dir / SUBMISSION_FILE)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {submission_dir / SUBMISSION_FILE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        model = module.Submission(sfreq_hz, "cpu").get_model_challenge_1()
        return predict(model, windows)
    finally:
        del sys.modules[name]


def _template() -> jinja2.Template:
    # Python source, not HTML: no autoescaping; values go in through repr().
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES), autoescape=False,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["pyrepr"] = repr
    return env.get_template("submission.py.j2")


def _write_zip(path: Path, files: list[Path]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in files:
            info = zipfile.ZipInfo(file.name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, file.read_bytes())
