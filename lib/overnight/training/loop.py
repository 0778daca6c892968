"""The training loop of a network, in the order it runs, with early stopping and resume.

A run fits the split's training subjects and judges itself on its tune subjects (early
stopping, the best epoch): it never reads a validation window, which compare reads once.
A refit (``train.refit``) then fits the training and the tune subjects for as many epochs
as that run kept (``Plan``).

Outputs in ``out_dir``: ``model.pt`` (the kept weights, a plain state dict that loads with
``weights_only=True``), ``model.json`` (what was trained, how, how well; written last, so
its presence means the training finished), ``history.jsonl`` (one line per epoch) and
``checkpoint.pt`` (everything needed to resume after a crash, rewritten every epoch).

Under ``torchrun`` (``overnight.distributed``) each process trains on its share of the
training windows with ``train.batch_size / processes`` per step, DDP averages the gradients,
and rank 0 alone scores the tune side, decides (early stopping, best epoch; the others follow
its broadcast) and writes the files. The shuffle and the dropout are seeded per epoch and rank,
so a run resumes from its checkpoint under the same or another number of processes.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overnight import atomic, distributed
from overnight.config import OWN_NORMALIZATION, TrainConfig
from overnight.evaluation import nrmse, predict
from overnight.models.base import Batch, RTModel
from overnight.models.registry import RegisteredModel
from overnight.provenance import code_version
from overnight.training import checkpoint
from overnight.training.augment import Augmentation
from overnight.training.data import SplitSide, load_split_sides
from overnight.training.device import resolve_autocast
from overnight.windows.cache import open_cache

log = logging.getLogger(__name__)

EpochHook = Callable[[int, float], None]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one run fits and how it keeps an epoch.

    A selection run fits the training subjects and keeps the epoch best on the tune
    subjects; a refit fits the training and the tune subjects for the epochs its selection
    kept (``selection``, that run's record), keeps the last, and carries its tune score.
    """

    fit_sides: tuple[str, ...] = ("train",)
    tune_side: str | None = "tune"
    selection: dict[str, Any] | None = None

    @classmethod
    def refit(cls, selection: dict[str, Any]) -> Plan:
        return cls(("train", "tune"), None, selection)

    def max_epochs(self, cfg: TrainConfig) -> int:
        return self.selection["best_epoch"] if self.selection else cfg.max_epochs

    def keeps(self, tune_nrmse: float, best_nrmse: float, cfg: TrainConfig) -> bool:
        """Whether this epoch's weights are the ones to keep."""
        return self.selection is not None or (
            math.isfinite(tune_nrmse) and tune_nrmse < best_nrmse - cfg.min_delta)


def train_network(model: RegisteredModel, windows_path: Path, split_path: Path,
                  out_dir: Path, cfg: TrainConfig, features_path: Path | None,
                  here: distributed.World, device: torch.device,
                  on_epoch: EpochHook | None = None) -> dict[str, Any]:
    """Train ``model`` with gradients in ``out_dir``: one selection run, and with
    ``cfg.refit`` the refit after it (the selection in ``out_dir/selection``)."""
    if not cfg.refit:
        return _run(model, windows_path, split_path, out_dir, cfg, features_path, here,
                    device, Plan(), on_epoch)
    selection = _run(model, windows_path, split_path, out_dir / "selection", cfg,
                     features_path, here, device, Plan(), on_epoch)
    return _run(model, windows_path, split_path, out_dir, cfg, features_path, here, device,
                Plan.refit(selection))


def _run(model_entry: RegisteredModel, windows_path: Path, split_path: Path, out_dir: Path,
         cfg: TrainConfig, features_path: Path | None, here: distributed.World,
         device: torch.device, plan: Plan, on_epoch: EpochHook | None = None
         ) -> dict[str, Any]:
    """One run of ``plan``; returns the content of ``model.json``."""
    name = model_entry.name
    # Derived state: precision, the batch of each process.
    autocast_dtype = resolve_autocast(cfg.precision, device)
    batch_per_process = _batch_per_process(cfg, here)
    log.info("training %s on %s (%s)%s", name, device,
             "bf16 autocast" if autocast_dtype else "fp32",
             f", process {here.rank} of {here.size}, {batch_per_process} windows a step"
             if here.size > 1 else "")

    # Data: this process's share, on the device when it fits, else streamed in slabs.
    train, tune, y_tune_s, stats = load_split_sides(
        windows_path, split_path, features_path, device, cfg, here, plan.fit_sides,
        plan.tune_side)
    max_epochs = plan.max_epochs(cfg)
    steps_per_epoch = math.ceil(len(train) / batch_per_process)

    # Model, optimizer, schedule: the LR follows the effective batch.
    window_spec = _window_spec(windows_path)
    model_args = model_arguments(model_entry.cls, cfg, window_spec)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = model_entry.build(**model_args).to(device)
    model.set_standardization(stats)
    trainer = distributed.data_parallel(LossModule(model), device, here)
    # What is scored and saved: the trained weights, or their moving average.
    ema = (torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(
            math.exp(-1.0 / (cfg.ema_epochs * steps_per_epoch))),
        use_buffers=True) if cfg.ema_epochs else None)
    scored = model if ema is None else ema.module
    augmentation = Augmentation(cfg, train.margin, window_spec["sfreq_hz"])
    peak_lr = _peak_lr(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(cfg.warmup_epochs * steps_per_epoch,
                                 cfg.max_epochs * steps_per_epoch))
    config_dict = dataclasses.asdict(cfg)
    run = checkpoint.identity(name, model_args, config_dict)
    state = checkpoint.resume(out_dir, run, model, optimizer, scheduler, ema,
                              {"epoch": 0, "best_nrmse": math.inf, "best_epoch": 0,
                               "epochs_since_best": 0, "train_seconds": 0.0}, here)

    # The loop: train an epoch, score the tune side (rank 0), keep, checkpoint, log, stop.
    while state["epoch"] < max_epochs and state["epochs_since_best"] < cfg.patience:
        started = time.perf_counter()
        epoch = state["epoch"] + 1
        generator = _epoch_seeds(cfg.seed, epoch, here)
        train_loss = train_epoch(trainer, model, ema, train, optimizer, scheduler, generator,
                                  batch_per_process, cfg, augmentation, autocast_dtype, here)
        tune_nrmse = distributed.broadcast(
            nrmse(y_tune_s, evaluate(scored, tune, cfg.eval_batch_size))
            if here.is_main and tune is not None else math.nan, here)
        seconds = time.perf_counter() - started
        state["train_seconds"] += seconds
        state["epoch"] = epoch
        kept = plan.keeps(tune_nrmse, state["best_nrmse"], cfg)
        if kept:
            state.update(best_nrmse=tune_nrmse, best_epoch=epoch, epochs_since_best=0)
        else:
            state["epochs_since_best"] += 1
        lr = optimizer.param_groups[0]["lr"]
        if here.is_main:
            if kept:
                checkpoint.save_weights(scored, out_dir / checkpoint.WEIGHTS_FILE)
            checkpoint.save_checkpoint(out_dir / checkpoint.CHECKPOINT_FILE, run, model,
                                       optimizer, scheduler, ema, state)
            atomic.append_line(out_dir / checkpoint.HISTORY_FILE, json.dumps({
                "epoch": epoch, "train_loss": train_loss, "tune_nrmse": _json_float(tune_nrmse),
                "lr": lr, "seconds": round(seconds, 3)}))
        _log_epoch(name, plan, epoch, max_epochs, train_loss, tune_nrmse, state, lr, seconds)
        if on_epoch is not None and plan.selection is None and here.is_main:
            on_epoch(epoch, tune_nrmse)
        if not math.isfinite(train_loss):
            log.error("%s: training loss is %s at epoch %d; stopping", name, train_loss, epoch)
            break

    # The record: written last, so its presence means the training finished.
    if plan.selection is not None:
        state["best_nrmse"] = plan.selection["best_tune_nrmse"]
    if state["best_epoch"] == 0:
        raise RuntimeError(f"{name}: no epoch gave a finite tune NRMSE")
    meta = {
        "model": name, "inputs": list(model_entry.declaration.inputs),
        "model_args": model_args,
        "n_params": sum(p.numel() for p in model.parameters()),
        "world_size": here.size, "batch_per_process": batch_per_process,
        "effective_batch": cfg.batch_size, "peak_lr": peak_lr, "lr_scaling": cfg.lr_scaling,
        "best_epoch": state["best_epoch"], "best_tune_nrmse": state["best_nrmse"],
        "epochs_run": state["epoch"], "train_seconds": round(state["train_seconds"], 2),
        "n_train_windows": len(train) * here.size,
        "n_tune_windows": (plan.selection["n_tune_windows"] if plan.selection
                           else len(y_tune_s)),
        "refit": None if plan.selection is None else {
            "subjects": list(plan.fit_sides), "epochs": max_epochs,
            "selection": "selection/ (fitted on the training subjects, its tune score is "
                         "best_tune_nrmse)"},
        "data_on_device": train.resident,
        "device": str(device), "precision": "bf16" if autocast_dtype else "fp32",
        "stopped": "the selection's epochs" if plan.selection else "early stopping"
        if state["epochs_since_best"] >= cfg.patience else "max epochs",
        "config": config_dict, "windows": str(windows_path), "split": str(split_path),
        "features": str(features_path) if features_path else None,
        "code_version": code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if here.is_main:
        meta["source"] = checkpoint.keep_source(model_entry, out_dir)
        atomic.write_json(out_dir / "model.json", meta)
    distributed.barrier(here)  # the files are there before any rank moves on
    log.info("%s: best tune NRMSE %.4f at epoch %d of %d, %.1f s", name,
             state["best_nrmse"], state["best_epoch"], state["epoch"], state["train_seconds"])
    return meta


def model_arguments(model_class: type[RTModel], cfg: TrainConfig,
                    window_spec: dict[str, Any]) -> dict[str, Any]:
    """What the window cache and the config offer, as far as the model's constructor takes
    it (EEGNeX keeps braindecode's own filters and dropout; ``**kwargs`` takes them all).
    ``normalization = "auto"`` offers each model its constructor's own default, written
    out, so that the checkpoint records the scaling it was trained with."""
    offered = {"n_chans": window_spec["n_chans"], "n_times": window_spec["n_times"],
               "n_filters": cfg.n_filters, "dropout": cfg.dropout,
               "normalization": cfg.normalization, "backbone": cfg.backbone,
               "dense_weight": cfg.dense_weight, "press_label_sd_s": cfg.press_label_sd_s,
               "sfreq_hz": window_spec["sfreq_hz"],
               "window_start_s": window_spec["window_start_s"]}
    parameters = inspect.signature(model_class).parameters
    if cfg.normalization == OWN_NORMALIZATION:
        own = parameters.get("normalization")
        if own is None or own.default is inspect.Parameter.empty:
            del offered["normalization"]
        else:
            offered["normalization"] = own.default
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return offered
    return {name: value for name, value in offered.items() if name in parameters}


def evaluate(model: torch.nn.Module, side: SplitSide, batch_size: int) -> np.ndarray:
    """Predictions (seconds, float64) for every window of ``side``, in its order."""
    out = np.empty(len(side))
    for x, f, positions in side.in_order():
        out[positions] = predict(model, x, batch_size, f)
    return out


def warmup_cosine(warmup_steps: int, total_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up, then cosine decay to 5 % of the peak."""
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))
    return multiplier


class LossModule(torch.nn.Module):
    """The model's loss of a batch as ``forward``: what DDP wraps (it hooks ``forward``
    only), so the model's own ``loss`` decides what it learns from."""

    def __init__(self, model: RTModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model.loss(batch)


def train_epoch(trainer: torch.nn.Module, model: RTModel,
                 ema: torch.optim.swa_utils.AveragedModel | None, train: SplitSide,
                 optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
                 batch_size: int, cfg: TrainConfig, augmentation: Augmentation,
                 autocast_dtype: torch.dtype | None, here: distributed.World) -> float:
    """One pass over this process's training windows in a seeded random order, each batch
    augmented; returns the mean loss over every process."""
    trainer.train()
    loss_sum = torch.zeros((), device=train.device)  # on the device: no host sync per step
    windows = 0
    for batch in train.batches(batch_size, generator):
        batch = augmentation(model, Batch(*batch))
        with torch.autocast(train.device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            loss = trainer(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        loss_sum += loss.detach() * len(batch.target)
        windows += len(batch.target)
    totals = torch.stack([loss_sum, torch.tensor(float(windows), device=loss_sum.device)])
    summed_loss, summed_windows = distributed.sum_across(totals, here).tolist()
    return summed_loss / summed_windows


def _epoch_seeds(seed: int, epoch: int, here: distributed.World) -> torch.Generator:
    """The shuffle's generator for one epoch of one rank, and the dropout's seed: from the
    epoch, not from a saved state, so a resumed run redraws them whatever its world."""
    epoch_seed = seed + 1_000_003 * epoch + 7_919 * here.rank
    torch.manual_seed(epoch_seed)
    return torch.Generator().manual_seed(epoch_seed)


def _batch_per_process(cfg: TrainConfig, here: distributed.World) -> int:
    if cfg.batch_size % here.size:
        raise ValueError(f"train.batch_size={cfg.batch_size} must divide by the {here.size} "
                         "training processes (NPROC x NNODES): it is the effective batch")
    return cfg.batch_size // here.size


def _peak_lr(cfg: TrainConfig) -> float:
    """The LR at the effective batch: ``lr`` scaled from ``lr_reference_batch``."""
    batch_ratio = cfg.batch_size / cfg.lr_reference_batch
    return cfg.lr * (batch_ratio if cfg.lr_scaling == "linear" else math.sqrt(batch_ratio))


def _window_spec(windows_path: Path) -> dict[str, Any]:
    with open_cache(windows_path) as cache:
        return {"sfreq_hz": cache.sfreq_hz, "window_start_s": cache.window_start_s,
                "n_chans": cache.n_chans, "n_times": cache.n_times}


def _log_epoch(name: str, plan: Plan, epoch: int, max_epochs: int, train_loss: float,
               tune_nrmse: float, state: dict[str, Any], lr: float, seconds: float) -> None:
    if plan.selection is None:
        log.info("%s epoch %d/%d  train loss %.4f  tune NRMSE %.4f  (best %.4f @ %d)  "
                 "lr %.2e  %.1fs", name, epoch, max_epochs, train_loss, tune_nrmse,
                 state["best_nrmse"], state["best_epoch"], lr, seconds)
    else:
        log.info("%s refit epoch %d/%d (training and tune subjects)  train loss %.4f  "
                 "lr %.2e  %.1fs", name, epoch, max_epochs, train_loss, lr, seconds)


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None
