"""What a training writes to resume after a crash, and the weights it ships.

``checkpoint.pt`` describes itself, as nanoGPT's does: the model's name and arguments, the
resolved ``[train]`` settings, the code version, the loop's state (epoch, best tune NRMSE,
its epoch, the time spent) and the weights, optimizer, schedule and moving average. A run
resumes from it only when the model, its arguments and the settings are the same.
Everything is written beside its target and moved into place (``atomic``), and loads with
``weights_only=True``. A model of the user's own keeps its source beside its weights.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from overnight import atomic, distributed
from overnight.models.registry import RegisteredModel
from overnight.provenance import code_version

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
WEIGHTS_FILE = "model.pt"
HISTORY_FILE = "history.jsonl"
SOURCE_FILE = "model_source.py"  # a user's model file, as it trained
# The finished model's predictions on the tune subjects (with their cache rows): what
# compare fits the blend of the night's models on.
TUNE_PREDICTIONS_FILE = "tune_predictions.npz"


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """A plain state dict on the CPU (what ships, and what ``load_trained_model`` reads)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic.atomic_path(path) as tmp:
        torch.save(state, tmp)


def identity(model_name: str, model_args: dict[str, Any], config: dict[str, Any]
             ) -> dict[str, str]:
    """What a checkpoint must match to be resumed: the model, its arguments, the settings."""
    return {"model_name": model_name,
            "model_args": json.dumps(model_args, sort_keys=True),
            "config": json.dumps(config, sort_keys=True)}


def save_checkpoint(path: Path, run: dict[str, str], model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any,
                    ema: torch.optim.swa_utils.AveragedModel | None,
                    state: dict[str, Any]) -> None:
    """Everything the run needs to go on after its last finished epoch."""
    checkpoint = {**run, "code_version": code_version(), "state": state,
                  "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(),
                  "ema": None if ema is None else ema.state_dict()}
    with atomic.atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def resume(out_dir: Path, run: dict[str, str], model: torch.nn.Module,
           optimizer: torch.optim.Optimizer, scheduler: Any,
           ema: torch.optim.swa_utils.AveragedModel | None, state: dict[str, Any],
           here: distributed.World) -> dict[str, Any]:
    """Continue after the last finished epoch when the checkpoint in ``out_dir`` is this
    run's (every rank reads it; rank 0 tidies the files); else start over: ``state``."""
    path = out_dir / CHECKPOINT_FILE
    history = out_dir / HISTORY_FILE
    checkpoint = (torch.load(path, map_location="cpu", weights_only=True)
                  if path.exists() else None)
    distributed.barrier(here)  # every rank has read it before rank 0 may remove it
    if checkpoint is None or any(checkpoint.get(key) != value for key, value in run.items()):
        if checkpoint is not None:
            log.warning("%s: checkpoint is from another model or config; starting over", path)
        if here.is_main:
            for stale in (path, history, out_dir / WEIGHTS_FILE):
                stale.unlink(missing_ok=True)
        return state
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    if ema is not None:
        ema.load_state_dict(checkpoint["ema"])
    state = dict(checkpoint["state"])
    if here.is_main:  # epochs logged after the checkpoint was written are redone
        rows = [r for r in atomic.read_json_lines(history)
                if r.get("epoch", 0) <= state["epoch"]]
        atomic.write_text(history, "".join(json.dumps(r) + "\n" for r in rows))
    log.info("%s: resuming after epoch %d (best tune NRMSE %.4f at epoch %d)",
             run["model_name"], state["epoch"], state["best_nrmse"], state["best_epoch"])
    return state


def keep_source(model: RegisteredModel, out_dir: Path) -> str | None:
    """A model of the user's own: its file, copied into ``out_dir`` (``SOURCE_FILE``, named in
    ``model.json``), so that what loads and ships later is the code that trained. A built-in
    model: None (the code version says which)."""
    if model.entry.builtin:
        return None
    target = out_dir / SOURCE_FILE
    if model.source.resolve() != target.resolve():
        atomic.write_text(target, model.source.read_text(encoding="utf-8"))
    return SOURCE_FILE
