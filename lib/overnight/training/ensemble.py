"""An ensemble: ``train.ensemble`` seeds of one model, shipped as their mean."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overnight import atomic, distributed
from overnight.config import TrainConfig
from overnight.evaluation import nrmse, predict
from overnight.models.registry import RegisteredModel
from overnight.training import checkpoint
from overnight.training.loop import EpochHook, train_network
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split

log = logging.getLogger(__name__)


def member_dir(out_dir: Path, k: int) -> Path:
    """Where member ``k`` of an ensemble trains (each resumable on its own)."""
    return out_dir / f"member-{k}"


def train_ensemble(model: RegisteredModel, windows_path: Path, split_path: Path,
                   out_dir: Path, cfg: TrainConfig, features_path: Path | None,
                   here: distributed.World, device: torch.device,
                   on_epoch: EpochHook | None = None) -> dict[str, Any]:
    """Train ``cfg.ensemble`` seeds (``seed``, ``seed + 1``, ...), then save their mean as
    one model in ``out_dir``, scored on the tune subjects; returns its ``model.json``."""
    members = [train_network(model, windows_path, split_path, member_dir(out_dir, k),
                             dataclasses.replace(cfg, seed=cfg.seed + k, ensemble=1),
                             features_path, here, device, on_epoch)
               for k in range(cfg.ensemble)]
    if not here.is_main:  # rank 0 joins the members; it wrote their files
        return members[-1]
    model_args = {**members[0]["model_args"], "ensemble": cfg.ensemble}
    ensemble = model.build(**model_args)
    for k, member in enumerate(ensemble.members):
        member.load_state_dict(torch.load(member_dir(out_dir, k) / checkpoint.WEIGHTS_FILE,
                                          map_location="cpu", weights_only=True))
    checkpoint.save_weights(ensemble, out_dir / checkpoint.WEIGHTS_FILE)
    tune = load_windows(windows_path, read_split(split_path)["tune"])
    score = nrmse(tune.rt.astype(np.float64), predict(ensemble, tune.eeg, cfg.eval_batch_size))
    meta = {**members[0], "model_args": model_args,
            "n_params": sum(p.numel() for p in ensemble.parameters()),
            "best_tune_nrmse": score,
            "best_epoch": max(m["best_epoch"] for m in members),
            "epochs_run": max(m["epochs_run"] for m in members),
            "train_seconds": round(sum(m["train_seconds"] for m in members), 2),
            "config": dataclasses.asdict(cfg),
            "members": [{"seed": m["config"]["seed"], "best_tune_nrmse": m["best_tune_nrmse"],
                         "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"]}
                        for m in members],
            "source": checkpoint.keep_source(model, out_dir),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic.write_json(out_dir / "model.json", meta)
    log.info("%s: ensemble of %d seeds, tune NRMSE %.4f (members %s)", model.name,
             cfg.ensemble, score, ", ".join(f"{m['best_tune_nrmse']:.4f}" for m in members))
    return meta
