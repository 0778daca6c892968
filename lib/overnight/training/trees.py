"""Fitting a model declared ``fit="trees"``: gradient-boosted trees on the window features.

scikit-learn's ``HistGradientBoostingRegressor`` fits the training subjects' features (the
feature cache) and stops on the tune subjects' loss; hummingbird-ml turns the fitted trees
into flat node tensors, which ``overnight.models.gbm.FeatureTrees`` evaluates with torch alone,
so the submission imports neither library (the scorer has torch only). The model folder
holds what every training writes: ``model.pt`` (a state dict that loads with
``weights_only=True``) and ``model.json`` (written last). The validation subjects are not
read.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overnight import atomic
from overnight.config import GBMConfig
from overnight.evaluation import nrmse
from overnight.features.cache import open_features
from overnight.models.gbm import FeatureTrees
from overnight.models.registry import RegisteredModel
from overnight.provenance import code_version
from overnight.training import checkpoint
from overnight.training.data import rt_range
from overnight.windows.cache import open_cache
from overnight.windows.split import read_split

log = logging.getLogger(__name__)

# The node tensors FeatureTrees holds, by the name of its buffer.
NODE_TENSORS = ("node_feature", "node_threshold", "node_left", "node_right", "node_value")
# The trees as tensors must give scikit-learn's predictions: float32 thresholds may move a
# window that lies within a rounding error of one, by one leaf's value (milliseconds).
CONVERSION_TOLERANCE_S = 1e-3


def fit_trees(model_entry: RegisteredModel, windows_path: Path, split_path: Path,
              features_path: Path, out_dir: Path, cfg: GBMConfig) -> dict[str, Any]:
    """Fit the trees on the training subjects' features, stop on the tune subjects', save
    them as ``model_entry``'s model (a ``FeatureTrees``) in ``out_dir``; return the content
    of ``model.json``.

    Raises
    ------
    TypeError
        The model is not a ``FeatureTrees``, whose node tensors the trees fill.
    RuntimeError
        The trees as tensors do not reproduce scikit-learn's predictions.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    if not issubclass(model_entry.cls, FeatureTrees):
        raise TypeError(f"{model_entry.source}: {model_entry.entry.class_name} declares "
                        "fit='trees', which fills the node tensors of a tree model: subclass "
                        "FeatureTrees (overnight.models.gbm)")
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_tune, y_tune), spec = _read_sides(windows_path, split_path,
                                                             features_path)
    settings = {"loss": "squared_error", "learning_rate": cfg.learning_rate,
                "max_leaf_nodes": cfg.max_leaf_nodes, "min_samples_leaf": cfg.min_samples_leaf,
                "l2_regularization": cfg.l2_regularization, "random_state": 0}
    search = HistGradientBoostingRegressor(
        max_iter=cfg.max_iter, early_stopping=True, scoring="loss",
        n_iter_no_change=cfg.n_iter_no_change, **settings)
    search.fit(x_train, y_train, X_val=x_tune, y_val=y_tune)
    # It stops n_iter_no_change trees after the best: keep the trees up to the best tune
    # loss (the same trees again, fitted without a random draw).
    tune_mse = [np.mean((y_tune - p) ** 2) for p in search.staged_predict(x_tune)]
    n_trees = int(np.argmin(tune_mse)) + 1
    regressor = HistGradientBoostingRegressor(max_iter=n_trees, early_stopping=False,
                                              **settings).fit(x_train, y_train)
    trees = tree_tensors(regressor)
    model_args = {key: trees[key] for key in ("n_trees", "n_nodes", "max_depth")} | {
        key: spec[key] for key in ("sfreq_hz", "window_start_s", "n_chans")}
    model = model_entry.build(**model_args)
    model.set_standardization({
        **{name: torch.from_numpy(trees[name]) for name in NODE_TENSORS},
        "base_rt": torch.tensor(trees["base_rt"]),
        "target_mean": torch.tensor(y_train.mean()),
        "target_std": torch.tensor(float(y_train.std()) or 1.0), **rt_range(y_train)})
    mended = _mend_single_leaf_trees(model, regressor, x_train)
    with torch.inference_mode():
        tree_rt = model.tree_rt(torch.from_numpy(x_tune)).squeeze(1).double().numpy()
    worst = float(np.max(np.abs(tree_rt - regressor.predict(x_tune)), initial=0.0))
    if worst > CONVERSION_TOLERANCE_S:
        raise RuntimeError(f"the trees as tensors differ from scikit-learn's by up to "
                           f"{worst:.3g} s on the tune windows; the conversion is wrong")
    # what the model answers: the trees' RT clamped to the training range
    tune_nrmse = nrmse(y_tune, np.clip(tree_rt, model.rt_min.item(), model.rt_max.item()))
    checkpoint.save_weights(model, out_dir / checkpoint.WEIGHTS_FILE)
    stopped = search.n_iter_ < cfg.max_iter
    meta = {
        "model": model_entry.name, "inputs": list(model_entry.declaration.inputs),
        "model_args": model_args,
        "n_params": int(trees["n_trees"] * trees["n_nodes"]),
        "best_epoch": n_trees, "epochs_run": int(search.n_iter_),
        "best_tune_nrmse": tune_nrmse, "stopped": "early stopping" if stopped else "max trees",
        "per_epoch_history": False,  # trees, not epochs: no history.jsonl
        "train_seconds": round(time.perf_counter() - started, 2),
        "n_train_windows": len(y_train), "n_tune_windows": len(y_tune),
        "conversion_max_error_s": worst, "single_leaf_trees_mended": mended,
        "device": "cpu", "precision": "fp32",
        "library": f"scikit-learn {version('scikit-learn')} HistGradientBoostingRegressor, "
                   f"tensors by hummingbird-ml {version('hummingbird-ml')}",
        "config": dataclasses.asdict(cfg), "windows": str(windows_path),
        "split": str(split_path), "features": str(features_path),
        "code_version": code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "source": checkpoint.keep_source(model_entry, out_dir),
    }
    atomic.write_json(out_dir / "model.json", meta)
    log.info("%s: %d trees, the best tune loss of %d (%s), tune NRMSE %.4f, %.1f s",
             model_entry.name, n_trees, search.n_iter_, meta["stopped"], tune_nrmse,
             meta["train_seconds"])
    return meta


def tree_tensors(regressor: Any) -> dict[str, Any]:
    """A fitted ``HistGradientBoostingRegressor`` as the flat node tensors of
    ``FeatureTrees`` (hummingbird-ml's tree-traversal form), children indexed into every
    node.

    Returns
    -------
    dict
        ``n_trees``, ``n_nodes`` (per tree, padded), ``max_depth``, ``base_rt`` (float) and
        the arrays of ``NODE_TENSORS`` (one entry per node of every tree).
    """
    from hummingbird.ml import convert

    with warnings.catch_warnings():  # its own slow-path notice, not ours to act on
        warnings.simplefilter("ignore", UserWarning)
        converted = convert(regressor, "torch",
                            extra_config={"tree_implementation": "tree_trav"})
    (operator,) = converted.model._operators
    n_trees, n_nodes = int(operator.num_trees), int(operator.num_nodes)
    offset = np.repeat(np.arange(n_trees) * n_nodes, n_nodes)  # each node's tree start

    def array(name: str) -> np.ndarray:
        return getattr(operator, name).detach().cpu().numpy().reshape(-1)

    base = getattr(operator, "base_prediction", None)
    return {"n_trees": n_trees, "n_nodes": n_nodes, "max_depth": int(operator.max_tree_depth),
            "base_rt": float(base.item()) if base is not None else 0.0,
            "node_feature": array("features").astype(np.int64),
            "node_threshold": array("thresholds").astype(np.float32),
            "node_left": array("lefts").astype(np.int64) + offset,
            "node_right": array("rights").astype(np.int64) + offset,
            "node_value": array("values").astype(np.float32)}


def _mend_single_leaf_trees(model: FeatureTrees, regressor: Any, x: np.ndarray) -> int:
    """Give each tree that is a single leaf its value; return how many there were.

    A tree without a split (no split helped, as on a tiny slice of data) comes out of
    hummingbird-ml as a split whose leaves are worth -1. scikit-learn's staged predictions
    say what each tree adds: such a tree adds one number to every window, which all its
    nodes are set to. Any other tree is left for the conversion check.
    """
    with torch.inference_mode():
        ours = model.leaf_values(torch.from_numpy(x)).double().numpy()  # (n, n_trees)
    before = np.full(len(x), model.base_rt.item())
    n_nodes = model.node_value.numel() // ours.shape[1]
    mended = 0
    for tree, after in enumerate(regressor.staged_predict(x)):
        added, before = after - before, after
        if (np.max(np.abs(ours[:, tree] - added)) > CONVERSION_TOLERANCE_S
                and np.ptp(added) <= CONVERSION_TOLERANCE_S):
            start = tree * n_nodes
            model.node_value[start:start + n_nodes] = float(added.mean())
            mended += 1
    return mended


def _read_sides(windows_path: Path, split_path: Path, features_path: Path
                ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray],
                           dict[str, Any]]:
    """(features, RT) of the training and the tune subjects, and the window geometry."""
    split = read_split(split_path)
    with open_cache(windows_path) as cache:
        subjects, rt = cache.subjects(), cache.rt()
        spec = {"sfreq_hz": cache.sfreq_hz, "window_start_s": cache.window_start_s,
                "n_chans": cache.n_chans}
    sides = []
    with open_features(features_path) as features:
        for side in ("train", "tune"):
            rows = np.flatnonzero(np.isin(subjects, split[side]))
            if len(rows) < 2:
                raise ValueError(f"{split_path}: {len(rows)} {side} window(s) in "
                                 f"{windows_path}; the trees need at least 2")
            x = np.nan_to_num(features.read(rows).astype(np.float32))
            sides.append((x, rt[rows]))
    return sides[0], sides[1], spec
