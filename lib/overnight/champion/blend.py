"""The blend of the night's models: non-negative weights summing to one, fitted on the tune
subjects' predictions, shipped as one model that embeds its members.

Every finished model writes its predictions on the tune subjects (``tune_predictions.npz``,
``overnight.training.fit``). The weights minimise the blend's squared error there, under
w >= 0 and sum(w) = 1: each single model is one such blend, so on the tune subjects the
blend is never worse than the best of them. The validation subjects are never read: the
blend is compared and gated on them like any other model. A model refitted on the tune
subjects (``train.refit``) is left out, its tune predictions being in-sample; so is one
without tune predictions (trained before they were recorded).

The blend is a model folder like any other (``models/blend``: ``model.json`` with each
member's name, arguments and weight, ``model.pt`` with every member's weights, and the
source of a member of the user's own).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.optimize

from overnight import atomic
from overnight.evaluation import (
    build_recorded_model,
    load_trained_model,
    nrmse,
    read_model_record,
)
from overnight.models.declaration import BLEND_NAME
from overnight.provenance import code_version
from overnight.training import checkpoint
from overnight.windows.cache import open_cache
from overnight.windows.split import read_split

log = logging.getLogger(__name__)
# A weight below this share is dropped and the rest renormalised: a member that adds
# nothing should not cost the submission its time.
MIN_WEIGHT = 0.01
SOURCES_DIR = "sources"  # the blend folder's copies of its members' model files


def fit_blend(models_dir: Path, windows_path: Path, split_path: Path) -> dict[str, Any]:
    """Fit the blend of the finished models in ``models_dir`` on their tune predictions and
    write it to ``models_dir / "blend"`` (``write_blend``); return what was done:
    ``written``, the weights or why there is no blend, each model's tune NRMSE, and the
    models left out and why. A blend folder already there is replaced, or removed when no
    blend is written tonight."""
    started = time.perf_counter()
    members, left_out, y = _candidates(models_dir, windows_path, split_path)
    done: dict[str, Any] = {"written": False, "left_out": left_out}
    if len(members) < 2:
        done["why"] = f"{len(members)} model(s) with tune predictions: nothing to blend"
    else:
        predictions = np.stack(list(members.values()), axis=1)
        weights = blend_weights(predictions, y)
        kept = {name: float(w) for name, w in zip(members, weights, strict=True) if w > 0}
        done["tune_nrmse_by_model"] = {name: nrmse(y, rt_s) for name, rt_s in members.items()}
        if len(kept) == 1:
            done["why"] = f"{next(iter(kept))} alone takes all the weight: no blend beats it"
        else:
            score = nrmse(y, predictions @ weights)
            write_blend(models_dir, kept, score, len(y), time.perf_counter() - started)
            done.update(written=True, weights=kept, tune_nrmse=score)
    if done["written"]:
        log.info("blend: %s, tune NRMSE %.4f%s", ", ".join(
            f"{name} {w:.2f}" for name, w in done["weights"].items()), done["tune_nrmse"],
            _listing(left_out))
    else:
        shutil.rmtree(models_dir / BLEND_NAME, ignore_errors=True)
        log.info("blend: %s%s", done["why"], _listing(left_out))
    return done


def write_blend(models_dir: Path, weights: Mapping[str, float], tune_nrmse: float,
                n_tune_windows: int, fit_seconds: float = 0.0) -> dict[str, Any]:
    """Write the blend of the models ``weights`` names (folders of ``models_dir``) into
    ``models_dir / "blend"``, beside itself and moved into place; return its
    ``model.json``."""
    out_dir = models_dir / BLEND_NAME
    staging = out_dir.with_name(f".{out_dir.name}-{time.time_ns()}")
    staging.mkdir(parents=True)
    try:
        records, states, metas = [], {}, []
        for k, (name, weight) in enumerate(weights.items()):
            model, meta = load_trained_model(models_dir / name)
            record = {"name": name, "model": meta["model"], "model_args": meta["model_args"],
                      "weight": float(weight), "source": None}
            if meta.get("source"):
                record["source"] = (Path(SOURCES_DIR) / f"{name}.py").as_posix()
                (staging / SOURCES_DIR).mkdir(exist_ok=True)
                shutil.copyfile(models_dir / name / meta["source"], staging / record["source"])
            records.append(record)
            metas.append(meta)
            states.update({f"members.{k}.{key}": value
                           for key, value in model.state_dict().items()})
        blend_meta = _record(metas, records, tune_nrmse, n_tune_windows, fit_seconds)
        blend = build_recorded_model(staging, blend_meta)
        blend.load_state_dict({**states, "weights": blend.weights}, strict=True)
        checkpoint.save_weights(blend, staging / checkpoint.WEIGHTS_FILE)
        atomic.write_json(staging / "model.json", blend_meta)
        shutil.rmtree(out_dir, ignore_errors=True)
        staging.replace(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return blend_meta


def discard_blend(models_dir: Path) -> dict[str, Any]:
    """No blend tonight (``[compare] blend = false``): one left by an earlier run of this
    night's compare is removed, so it is not scored as a model."""
    shutil.rmtree(models_dir / BLEND_NAME, ignore_errors=True)
    return {"written": False, "why": "off ([compare] blend = false)", "left_out": {}}


def blend_weights(predictions: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The non-negative weights, summing to one, that minimise the squared error of
    ``predictions`` (N, M) @ w against ``y`` (N,); weights under ``MIN_WEIGHT`` are
    dropped. Never worse than the best single column."""
    n_models = predictions.shape[1]
    scale = float(np.std(y)) or 1.0
    p, target = predictions / scale, y / scale  # seconds in units of the RT spread

    def squared_error(w: np.ndarray) -> float:
        return float(np.mean((p @ w - target) ** 2))

    best = int(np.argmin([squared_error(np.eye(n_models)[k]) for k in range(n_models)]))
    found = scipy.optimize.minimize(
        squared_error, np.eye(n_models)[best], method="SLSQP",
        jac=lambda w: 2.0 * p.T @ (p @ w - target) / len(target),
        bounds=[(0.0, 1.0)] * n_models,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                      "jac": lambda w: np.ones_like(w)}],
        options={"ftol": 1e-12, "maxiter": 500})
    weights = np.clip(found.x, 0.0, None)
    weights[weights < MIN_WEIGHT] = 0.0
    if weights.sum() == 0:
        weights[best] = 1.0
    weights /= weights.sum()
    single = np.eye(n_models)[best]
    return weights if squared_error(weights) <= squared_error(single) else single


def _candidates(models_dir: Path, windows_path: Path, split_path: Path
                ) -> tuple[dict[str, np.ndarray], dict[str, str], np.ndarray]:
    """The finished models' tune predictions (name -> seconds) where they are for exactly
    the tune windows, why each other model folder is left out, and the tune RTs."""
    with open_cache(windows_path) as cache:
        tune_rows = np.flatnonzero(np.isin(cache.subjects(), read_split(split_path)["tune"]))
        y = cache.rt()[tune_rows]
    members, left_out = {}, {}
    for model_dir in sorted(p.parent for p in models_dir.glob("*/model.json")):
        name = model_dir.name
        if name == BLEND_NAME:
            continue
        meta = read_model_record(model_dir)
        path = model_dir / checkpoint.TUNE_PREDICTIONS_FILE
        why = ("not run" if meta.get("not_run") else
               "refitted on the tune subjects" if meta.get("refit") else
               "no tune predictions (trained before they were recorded)"
               if not path.is_file() else None)
        if why is None:
            with np.load(path) as saved:
                index, rt_s = saved["index"], saved["rt_s"].astype(np.float64)
            why = ("its tune predictions are for other windows"
                   if not np.array_equal(index, tune_rows) else
                   "non-finite tune predictions" if not np.isfinite(rt_s).all() else None)
        if why:
            left_out[name] = why
        else:
            members[name] = rt_s
    return members, left_out, y


def _record(metas: list[dict[str, Any]], records: list[dict[str, Any]], tune_nrmse: float,
            n_tune_windows: int, fit_seconds: float) -> dict[str, Any]:
    inputs = sorted({i for meta in metas for i in meta.get("inputs") or ("eeg",)},
                    key=("eeg", "features").index)
    return {"model": BLEND_NAME, "inputs": inputs, "members": records,
            "model_args": {"sfreq_hz": metas[0]["model_args"].get("sfreq_hz", 100.0)},
            "best_tune_nrmse": tune_nrmse, "best_epoch": None, "epochs_run": None,
            "n_params": sum(int(meta.get("n_params") or 0) for meta in metas),
            "train_seconds": round(fit_seconds, 2), "per_epoch_history": False,
            "n_tune_windows": n_tune_windows, "code_version": code_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _listing(left_out: dict[str, str]) -> str:
    return "; left out: " + ", ".join(f"{n} ({why})" for n, why in left_out.items()) \
        if left_out else ""
