"""The metric and the one way every model is scored.

NRMSE = RMSE(y_true, y_pred) / std(y_true) with the population std (ddof=0), as in
Challenge 1: predicting the mean of y_true scores exactly 1.0, lower is better. It is
never normalised by the range.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overnight.config import TrainConfig
from overnight.models.base import RTModel
from overnight.models.declaration import BLEND_NAME
from overnight.models.ensemble import Blend, Ensemble, build_blend_of
from overnight.models.registry import RegisteredModel, find_model


def nrmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """RMSE / std(y_true) (ddof=0); NaN when any prediction is not finite.

    Raises
    ------
    ValueError
        Shapes differ, fewer than two values, or y_true is constant (std 0).
    """
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.size} values but y_pred has {y_pred.size}")
    if y_true.size < 2:
        raise ValueError(f"NRMSE needs at least 2 values, got {y_true.size}")
    std = y_true.std()
    if std == 0:
        raise ValueError("NRMSE is undefined when y_true is constant (std 0)")
    if not np.all(np.isfinite(y_pred)):
        return math.nan
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)) / std)


def subject_bootstrap(y_true: np.ndarray, predictions: Mapping[str, np.ndarray],
                      subjects: Sequence[str], n_resamples: int,
                      seed: int = 0) -> dict[str, np.ndarray]:
    """Each prediction's NRMSE on ``n_resamples`` resamples of the validation windows.

    A resample draws the validation subjects with replacement, then each drawn subject's
    windows with replacement: subjects, not windows, are the units that vary. Every
    prediction is scored on the same resamples, so two models can be compared pairwise.

    Returns
    -------
    dict
        Name -> (n_resamples,) NRMSE (NaN where a resample has no spread in ``y_true``).
    """
    y = np.asarray(y_true, dtype=np.float64)
    names = list(predictions)
    stacked = np.stack([np.asarray(predictions[n], dtype=np.float64) for n in names])
    labels = np.asarray(subjects)
    groups = [np.flatnonzero(labels == s) for s in np.unique(labels)]
    rng = np.random.default_rng(seed)
    scores = np.full((len(names), n_resamples), np.nan)
    for r in range(n_resamples):
        drawn = rng.integers(0, len(groups), len(groups))
        rows = np.concatenate([groups[g][rng.integers(0, len(groups[g]), len(groups[g]))]
                               for g in drawn])
        spread = y[rows].std()
        if spread > 0:
            err = stacked[:, rows] - y[rows]
            scores[:, r] = np.sqrt(np.mean(err * err, axis=1)) / spread
    return dict(zip(names, scores, strict=True))


def interval(resampled: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap values (NaN resamples ignored)."""
    tail = 50.0 * (1.0 - level)
    low, high = np.nanpercentile(resampled, [tail, 100.0 - tail])
    return float(low), float(high)


def permutation_importance(model: RTModel | Ensemble | Blend, eeg: np.ndarray,
                           features: np.ndarray, y_true: np.ndarray, subjects: Sequence[str],
                           families: Mapping[str, Sequence[int]], n_resamples: int,
                           level: float, repeats: int = 3, seed: int = 0
                           ) -> dict[str, dict[str, Any]]:
    """How much a model's NRMSE rises when one family of its features is shuffled across
    windows, the other families and the raw window left as they are.

    ``features`` (N, F) are the windows' precomputed features, passed to the model in place
    of the ones it would compute from the window; a family's columns are permuted together
    (one permutation of the windows per repeat), ``repeats`` times (``feature_shuffles``);
    what the model computes from the raw window is computed once for all of them
    (``predict_feature_variants``). The interval comes from the subject bootstrap: on every
    resample, the rise averaged over the repeats (``importance_of``).

    Returns
    -------
    dict
        Family -> ``{"delta_nrmse": float, "interval": [low, high]}``.
    """
    variants = feature_shuffles(features, families, repeats, seed)
    return importance_of(predict_feature_variants(model, eeg, variants), y_true, subjects,
                         families, n_resamples, level, repeats, seed)


def feature_shuffles(features: np.ndarray, families: Mapping[str, Sequence[int]],
                     repeats: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The features as they are (``"intact"``) and, per family and repeat
    (``"<family>/<repeat>"``), with that family's columns permuted across windows."""
    rng = np.random.default_rng(seed)
    variants = {"intact": features}
    for family, columns in families.items():
        for repeat in range(repeats):
            shuffled = features.copy()
            shuffled[:, columns] = features[rng.permutation(len(features))][:, columns]
            variants[f"{family}/{repeat}"] = shuffled
    return variants


def importance_of(predictions: Mapping[str, np.ndarray], y_true: np.ndarray,
                  subjects: Sequence[str], families: Mapping[str, Sequence[int]],
                  n_resamples: int, level: float, repeats: int = 3, seed: int = 0
                  ) -> dict[str, dict[str, Any]]:
    """Each family's rise of NRMSE from the predictions of ``feature_shuffles``' variants
    (the same names), with its subject-bootstrap interval."""
    y = np.asarray(y_true, dtype=np.float64)
    resampled = subject_bootstrap(y, predictions, subjects, n_resamples, seed)
    intact = nrmse(y, predictions["intact"])
    result = {}
    for family in families:
        names = [f"{family}/{repeat}" for repeat in range(repeats)]
        rises = np.mean([resampled[name] - resampled["intact"] for name in names], axis=0)
        result[family] = {
            "delta_nrmse": float(np.mean([nrmse(y, predictions[name]) for name in names])
                                 - intact),
            "interval": list(interval(rises, level))}
    return result


# Bins of the true RT (seconds) for the error by response time: the first holds the presses
# before the window opens (RT < 0.5 s), which no window shows.
RT_BIN_EDGES_S = (0.5, 1.0, 1.5, 2.0)


def error_by_rt_bin(y_true: np.ndarray, predictions: Mapping[str, np.ndarray]
                    ) -> list[dict[str, Any]]:
    """RMSE (seconds) and mean error (prediction - truth) of each model per bin of the true
    RT (``RT_BIN_EDGES_S``); a bin without windows is left out.

    Returns
    -------
    list of dict
        Per bin, in order: ``label``, ``low_s``, ``high_s`` (None at the open ends),
        ``n_windows``, ``rmse_s`` and ``bias_s`` (model -> float).
    """
    y = np.asarray(y_true, dtype=np.float64)
    edges = (-math.inf, *RT_BIN_EDGES_S, math.inf)
    rows = []
    for low, high in itertools.pairwise(edges):
        inside = (y >= low) & (y < high)
        if not inside.any():
            continue
        label = (f"< {high:g} s" if low == -math.inf else f">= {low:g} s" if high == math.inf
                 else f"{low:g}-{high:g} s")
        errors = {name: np.asarray(pred, dtype=np.float64)[inside] - y[inside]
                  for name, pred in predictions.items()}
        rows.append({"label": label, "low_s": None if low == -math.inf else low,
                     "high_s": None if high == math.inf else high,
                     "n_windows": int(inside.sum()),
                     "rmse_s": {n: float(np.sqrt(np.mean(e * e))) for n, e in errors.items()},
                     "bias_s": {n: float(np.mean(e)) for n, e in errors.items()}})
    return rows


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error in the targets' unit (seconds)."""
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2)))


@torch.inference_mode()
def predict(model: torch.nn.Module, x: torch.Tensor | np.ndarray, batch_size: int | None = None,
            features: torch.Tensor | None = None) -> np.ndarray:
    """Predictions in seconds, (N,) float64, with the model in eval mode (deterministic).

    ``x`` (N, C, T) volts, in batches of ``batch_size`` windows (default: the config's
    ``train.eval_batch_size``). Without ``features`` a hybrid model computes its own from
    the window, as the submission does.
    """
    batch_size = batch_size or TrainConfig().eval_batch_size
    was_training = model.training
    model.eval()
    device = _device_of(model)
    x = torch.as_tensor(x)
    out = []
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device, non_blocking=True)
        fb = features[start:start + batch_size].to(device) if features is not None else None
        out.append(model(xb, fb).float().squeeze(1).cpu())
    model.train(was_training)
    if not out:
        return np.zeros(0)
    return torch.cat(out).numpy().astype(np.float64)


@torch.inference_mode()
def predict_feature_variants(model: RTModel | Ensemble | Blend, x: torch.Tensor | np.ndarray,
                             variants: Mapping[str, np.ndarray | None],
                             batch_size: int | None = None) -> dict[str, np.ndarray]:
    """``predict`` of the same windows with several versions of their features (N, F) by
    name (None: the model computes its own, as the submission does): each batch's
    raw-window part is computed once (``feature_response``), then read with every
    version."""
    batch_size = batch_size or TrainConfig().eval_batch_size
    was_training = model.training
    model.eval()
    device = _device_of(model)
    x = torch.as_tensor(x)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in variants}
    for start in range(0, len(x), batch_size):
        respond = model.feature_response(x[start:start + batch_size].to(device))
        for name, features in variants.items():
            batch = (None if features is None
                     else torch.from_numpy(features[start:start + batch_size]).to(device))
            out[name].append(respond(batch).float().squeeze(1).cpu())
    model.train(was_training)
    return {name: torch.cat(parts).numpy().astype(np.float64) if parts else np.zeros(0)
            for name, parts in out.items()}


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(itertools.chain(model.parameters(), model.buffers())).device  # trees: buffers


def load_trained_model(model_dir: Path, device: str | torch.device = "cpu"
                       ) -> tuple[torch.nn.Module, dict]:
    """A finished model from its folder (``model.json`` + ``model.pt``), in eval mode.

    Raises
    ------
    ValueError
        A weight is NaN or infinite (a diverged training): the model's output guard would
        hide it behind the training mean, so it is refused here.
    """
    meta = read_model_record(model_dir)
    model = build_recorded_model(model_dir, meta)
    state = torch.load(Path(model_dir) / "model.pt", map_location=device, weights_only=True)
    broken = [name for name, tensor in state.items()
              if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise ValueError(f"{Path(model_dir) / 'model.pt'}: non-finite weights in {broken[:3]}")
    model.load_state_dict(state)
    return model.to(device).eval(), meta


def read_model_record(model_dir: Path) -> dict[str, Any]:
    """A model folder's ``model.json``; ``FileNotFoundError`` when the training did not
    finish."""
    meta_path = Path(model_dir) / "model.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path}: no finished training in {model_dir}")
    return json.loads(meta_path.read_text())


def trained_model_class(model_dir: Path, meta: dict[str, Any]) -> RegisteredModel:
    """The registered model a folder holds (or a blend's member record names): a built-in
    one, or the user's own from the copy of its source kept in ``model_dir``."""
    source = meta.get("source")
    return find_model(meta["model"], [str(Path(model_dir) / source)] if source else ())


def build_recorded_model(model_dir: Path, meta: dict[str, Any]) -> torch.nn.Module:
    """The untrained module of a model folder's record (``model.json``): the model with its
    arguments, or a blend of its members with their weights."""
    if meta["model"] == BLEND_NAME:
        return build_blend_of([(trained_model_class(model_dir, member).cls,
                                member["model_args"]) for member in meta["members"]],
                              [member["weight"] for member in meta["members"]])
    return trained_model_class(model_dir, meta).build(**meta["model_args"])
