"""Training any registered model: the one entry point, ``train_model``.

The model's declaration says how it is fitted: ``gradients`` by the training loop (one
seed, an ensemble of seeds, a refit), ``trees`` by scikit-learn. A model that cannot be
built here (an optional library is missing) gets a ``model.json`` that says why, so the
comparison and the report show it as not run and the night goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from overnight import atomic, distributed
from overnight.config import GBMConfig, TrainConfig
from overnight.evaluation import load_trained_model, predict
from overnight.models.registry import RegisteredModel, find_model
from overnight.provenance import code_version
from overnight.training import checkpoint
from overnight.training.device import resolve_device
from overnight.training.ensemble import train_ensemble
from overnight.training.loop import EpochHook, train_network
from overnight.training.trees import fit_trees
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split

log = logging.getLogger(__name__)


def train_model(model_name: str, windows_path: Path, split_path: Path, out_dir: Path,
                cfg: TrainConfig, features_path: Path | None = None,
                on_epoch: EpochHook | None = None, *, gbm: GBMConfig | None = None,
                extra_models: Sequence[str] = ()) -> dict[str, Any]:
    """Fit the registered model ``model_name`` on the split's training subjects, judged on
    its tune subjects; write its folder ``out_dir``; return the content of ``model.json``.

    Parameters
    ----------
    model_name : str
        A registered model (``overnight.models.registry.find_model``).
    windows_path, split_path : Path
        The window cache and the subject split. The validation subjects are not read.
    out_dir : Path
        The model folder; a training that finds its own checkpoint there resumes.
    cfg : TrainConfig
        ``[train]``: the loop's settings (``ensemble`` > 1: that many seeds, their mean).
    features_path : Path, optional
        The feature cache, for a model that reads features.
    on_epoch : callable, optional
        ``on_epoch(epoch, tune_nrmse)``, on rank 0 after each epoch scored on the tune
        subjects, once its checkpoint is written; an exception it raises stops the training
        (the search prunes trials this way). Not called for trees.
    gbm : GBMConfig, optional
        ``[gbm]``, for a model fitted as trees (default: the defaults).
    extra_models : sequence of str
        ``[night] extra_models``: where the user's own models are registered.

    Raises
    ------
    ValueError
        An unknown model, or a model that reads features without ``features_path``.
    """
    model = find_model(model_name, extra_models)
    if model.declaration.reads_features and features_path is None:
        raise ValueError(f"model {model_name!r} reads the features: pass the feature cache")
    features_path = features_path if model.declaration.reads_features else None
    out_dir.mkdir(parents=True, exist_ok=True)
    reason = model.cls.unavailable()
    if reason is not None:
        return _record_not_run(model, out_dir, reason)
    if model.declaration.fit == "trees":
        meta = fit_trees(model, windows_path, split_path, features_path, out_dir,
                         gbm or GBMConfig())
        record_tune_predictions(out_dir, windows_path, split_path, cfg.eval_batch_size)
        return meta
    here = distributed.world()
    device = distributed.device_for(resolve_device(cfg.device), here)
    with distributed.process_group(here, device):
        if cfg.ensemble > 1:
            meta = train_ensemble(model, windows_path, split_path, out_dir, cfg,
                                  features_path, here, device, on_epoch)
        else:
            meta = train_network(model, windows_path, split_path, out_dir, cfg,
                                 features_path, here, device, on_epoch)
    if here.is_main:
        record_tune_predictions(out_dir, windows_path, split_path, cfg.eval_batch_size)
    return meta


def record_tune_predictions(model_dir: Path, windows_path: Path, split_path: Path,
                            batch_size: int) -> None:
    """Write the finished model's predictions (seconds) on the tune subjects, with their
    cache rows, as the submission makes them (the model computes its own features), into
    ``model_dir``: compare fits the blend of the night's models on them."""
    tune = load_windows(windows_path, read_split(split_path)["tune"])
    model, _ = load_trained_model(model_dir)
    rt_s = predict(model, tune.eeg, batch_size)
    with atomic.atomic_path(model_dir / checkpoint.TUNE_PREDICTIONS_FILE) as tmp, \
            tmp.open("wb") as fh:
        np.savez(fh, index=tune.index, rt_s=rt_s)


def _record_not_run(model: RegisteredModel, out_dir: Path, reason: str) -> dict[str, Any]:
    log.warning("%s: not run: %s", model.name, reason)
    meta = {"model": model.name, "inputs": list(model.declaration.inputs), "not_run": reason,
            "code_version": code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic.write_json(out_dir / "model.json", meta)
    return meta
