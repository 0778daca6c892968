"""Training one model on the window cache, with early stopping and crash-safe resume.

Outputs in ``out_dir``: ``model.pt`` (best weights, a plain state dict that loads with
``weights_only=True``), ``model.json`` (what was trained, how, how well; written last,
so its presence means the training finished), ``history.jsonl`` (one line per epoch) and
``checkpoint.pt`` (everything needed to resume after a crash, rewritten every epoch).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overnight import atomic
from overnight.config import TrainConfig
from overnight.data import load_windows, read_split
from overnight.evaluation import nrmse, predict
from overnight.features import read_features
from overnight.models import MODELS, RTModel, build_model
from overnight.provenance import code_version

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")


@dataclasses.dataclass
class TrainingData:
    """Tensors on the training device: standardised targets, raw windows, optional features."""

    x_train: torch.Tensor  # (N, C, T) volts
    y_train: torch.Tensor  # (N,) standardised
    f_train: torch.Tensor | None  # (N, F) or None
    x_val: torch.Tensor
    y_val_s: np.ndarray  # (M,) seconds, for the NRMSE
    f_val: torch.Tensor | None
    stats: dict[str, torch.Tensor]


def train_model(model_name: str, windows_path: Path, split_path: Path, out_dir: Path,
                cfg: TrainConfig, features_path: Path | None = None) -> dict[str, Any]:
    """Train ``model_name`` on the split's training subjects; early-stop on validation NRMSE.

    Resumes from ``out_dir/checkpoint.pt`` when it holds the same model and config.
    Returns the content of ``model.json``.
    """
    if model_name not in MODELS:
        raise ValueError(f"model={model_name!r}: expected one of {sorted(MODELS)}")
    if cfg.precision not in PRECISIONS:
        raise ValueError(f"train.precision={cfg.precision!r}: expected one of {PRECISIONS}")
    uses_features = MODELS[model_name].uses_features
    if uses_features and features_path is None:
        raise ValueError(f"model {model_name!r} needs the feature cache: pass features_path")
    out_dir.mkdir(parents=True, exist_ok=True)

    # Derived state: device, seed, precision.
    device = resolve_device(cfg.device)
    autocast_dtype = resolve_autocast(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    log.info("training %s on %s (%s)", model_name, device,
             "bf16 autocast" if autocast_dtype else "fp32")

    # Data, once onto the device.
    data = load_training_data(windows_path, split_path, features_path if uses_features else None,
                              device)
    n_train = len(data.y_train)
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)

    # Model, optimizer, schedule.
    window_spec = _window_spec(windows_path)
    model_args = _model_args(model_name, cfg, data.x_train.shape, window_spec)
    model = build_model(model_name, **model_args).to(device)
    model.set_standardization(data.stats)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(cfg.warmup_epochs * steps_per_epoch,
                                  cfg.max_epochs * steps_per_epoch))
    generator = torch.Generator().manual_seed(cfg.seed)
    state = {"epoch": 0, "best_nrmse": math.inf, "best_epoch": 0, "epochs_since_best": 0,
             "train_seconds": 0.0}
    config_dict = dataclasses.asdict(cfg)
    state = _maybe_resume(out_dir, model_name, config_dict, model, optimizer, scheduler,
                          generator, state)

    # One loop: train an epoch, evaluate, checkpoint, log, stop.
    history_path = out_dir / "history.jsonl"
    while state["epoch"] < cfg.max_epochs and state["epochs_since_best"] < cfg.patience:
        started = time.perf_counter()
        epoch = state["epoch"] + 1
        train_loss = _train_epoch(model, data, optimizer, scheduler, generator, cfg,
                                  autocast_dtype)
        val_pred = predict(model, data.x_val, cfg.eval_batch_size, data.f_val)
        val_nrmse = nrmse(data.y_val_s, val_pred)
        seconds = time.perf_counter() - started
        state["train_seconds"] += seconds
        state["epoch"] = epoch
        if math.isfinite(val_nrmse) and val_nrmse < state["best_nrmse"] - cfg.min_delta:
            state.update(best_nrmse=val_nrmse, best_epoch=epoch, epochs_since_best=0)
            _save_state_dict(model, out_dir / "model.pt")
        else:
            state["epochs_since_best"] += 1
        _save_checkpoint(out_dir / "checkpoint.pt", model_name, config_dict, model, optimizer,
                         scheduler, generator, state)
        lr = optimizer.param_groups[0]["lr"]
        atomic.append_line(history_path, json.dumps({
            "epoch": epoch, "train_loss": train_loss, "val_nrmse": _json_float(val_nrmse),
            "lr": lr, "seconds": round(seconds, 3)}))
        log.info("%s epoch %d/%d  train loss %.4f  val NRMSE %.4f  (best %.4f @ %d)  "
                 "lr %.2e  %.1fs", model_name, epoch, cfg.max_epochs, train_loss, val_nrmse,
                 state["best_nrmse"], state["best_epoch"], lr, seconds)
        if not math.isfinite(train_loss):
            log.error("%s: training loss is %s at epoch %d; stopping", model_name,
                      train_loss, epoch)
            break

    if state["best_epoch"] == 0:
        raise RuntimeError(f"{model_name}: no epoch gave a finite validation NRMSE")
    meta = {
        "model": model_name, "model_args": model_args,
        "n_params": sum(p.numel() for p in model.parameters()),
        "best_epoch": state["best_epoch"], "best_val_nrmse": state["best_nrmse"],
        "epochs_run": state["epoch"], "train_seconds": round(state["train_seconds"], 2),
        "n_train_windows": n_train, "n_val_windows": len(data.y_val_s),
        "device": str(device), "precision": "bf16" if autocast_dtype else "fp32",
        "stopped": "early stopping" if state["epochs_since_best"] >= cfg.patience
        else "max epochs",
        "config": config_dict, "windows": str(windows_path), "split": str(split_path),
        "features": str(features_path) if uses_features else None,
        "code_version": code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic.write_json(out_dir / "model.json", meta)
    log.info("%s: best val NRMSE %.4f at epoch %d of %d, %.1f s", model_name,
             state["best_nrmse"], state["best_epoch"], state["epoch"], state["train_seconds"])
    return meta


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the GPU (CUDA or ROCm) when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but no GPU is visible to torch")
    return device


def resolve_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast where the GPU supports it (and ``precision`` allows it), else None."""
    if precision == "fp32" or device.type != "cuda":
        if precision == "bf16":
            raise ValueError("train.precision='bf16' needs a GPU; use 'auto' or 'fp32'")
        return None
    if not torch.cuda.is_bf16_supported():
        if precision == "bf16":
            raise ValueError("train.precision='bf16' but this GPU does not support bf16")
        return None
    return torch.bfloat16


def load_training_data(windows_path: Path, split_path: Path, features_path: Path | None,
                       device: torch.device) -> TrainingData:
    """Load both sides of the split and fit the standardisation on the training side only."""
    split = read_split(split_path)
    train = load_windows(windows_path, split["train"])
    val = load_windows(windows_path, split["val"])
    stats = fit_standardization(train.eeg, train.rt)
    f_train = f_val = None
    if features_path is not None:
        train_features, _ = read_features(features_path, train.index)
        val_features, _ = read_features(features_path, val.index)
        stats.update(_feature_stats(train_features))
        f_train = torch.from_numpy(train_features).to(device)
        f_val = torch.from_numpy(val_features).to(device)
    y_train = (train.rt.astype(np.float64) - float(stats["target_mean"])) / float(
        stats["target_std"])
    log.info("data: %d training windows (%d subjects), %d validation windows (%d subjects)",
             len(train.rt), len(split["train"]), len(val.rt), len(split["val"]))
    return TrainingData(
        x_train=torch.from_numpy(train.eeg).to(device),
        y_train=torch.from_numpy(y_train.astype(np.float32)).to(device),
        f_train=f_train, x_val=torch.from_numpy(val.eeg).to(device),
        y_val_s=val.rt.astype(np.float64), f_val=f_val, stats=stats)


def fit_standardization(eeg: np.ndarray, rt: np.ndarray) -> dict[str, torch.Tensor]:
    """Per-channel input mean/std and target mean/std, in float64; flat channels get std 1."""
    mean = eeg.mean(axis=(0, 2), dtype=np.float64)
    mean_sq = np.square(eeg, dtype=np.float64).mean(axis=(0, 2))
    std = np.sqrt(np.maximum(mean_sq - mean**2, 0.0))
    return {
        "input_mean": torch.from_numpy(mean), "input_std": torch.from_numpy(_safe_std(std)),
        "target_mean": torch.tensor(float(rt.mean(dtype=np.float64))),
        "target_std": torch.tensor(float(_safe_std(np.array(rt.std(dtype=np.float64))))),
    }


def _feature_stats(features: np.ndarray) -> dict[str, torch.Tensor]:
    mean = features.mean(axis=0, dtype=np.float64)
    std = features.std(axis=0, dtype=np.float64)
    return {"feature_mean": torch.from_numpy(mean), "feature_std": torch.from_numpy(_safe_std(std))}


def _safe_std(std: np.ndarray) -> np.ndarray:
    return np.where(std > 0, std, 1.0)


def _train_epoch(model: RTModel, data: TrainingData, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
                 cfg: TrainConfig, autocast_dtype: torch.dtype | None) -> float:
    """One pass over the training windows in a seeded random order; returns the mean loss."""
    model.train()
    device = data.x_train.device
    order = torch.randperm(len(data.y_train), generator=generator).to(device)
    total = torch.zeros((), device=device)  # summed on the device: no host sync per step
    for start in range(0, len(order), cfg.batch_size):
        batch = order[start:start + cfg.batch_size]
        features = data.f_train[batch] if data.f_train is not None else None
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            out = model.standardized_output(data.x_train[batch], features).squeeze(1)
        loss = torch.nn.functional.mse_loss(out.float(), data.y_train[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        total += loss.detach() * len(batch)
    return float(total) / len(order)


def _warmup_cosine(warmup_steps: int, total_steps: int):
    """LR multiplier: linear warm-up, then cosine decay to 5 % of the peak."""
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))
    return multiplier


def _window_spec(windows_path: Path) -> dict[str, float]:
    import h5py

    with h5py.File(windows_path, "r") as fh:
        return {"sfreq_hz": float(fh.attrs["sfreq_hz"]),
                "window_start_s": float(fh.attrs["window_start_s"])}


def _model_args(model_name: str, cfg: TrainConfig, shape: torch.Size,
                window_spec: dict[str, float]) -> dict[str, Any]:
    args: dict[str, Any] = {"n_chans": int(shape[1]), "n_times": int(shape[2]),
                            "n_filters": cfg.n_filters, "dropout": cfg.dropout}
    if MODELS[model_name].uses_features:
        args.update(window_spec)
    return args


def _save_state_dict(model: RTModel, path: Path) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic.atomic_path(path) as tmp:
        torch.save(state, tmp)


def _save_checkpoint(path: Path, model_name: str, config: dict[str, Any], model: RTModel,
                     optimizer: torch.optim.Optimizer, scheduler: Any,
                     generator: torch.Generator, state: dict[str, Any]) -> None:
    checkpoint = {"model_name": model_name, "config": json.dumps(config, sort_keys=True),
                  "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                  "torch_rng": torch.get_rng_state(), "state": state}
    with atomic.atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def _maybe_resume(out_dir: Path, model_name: str, config: dict[str, Any], model: RTModel,
                  optimizer: torch.optim.Optimizer, scheduler: Any,
                  generator: torch.Generator, state: dict[str, Any]) -> dict[str, Any]:
    """Continue after the last finished epoch when the checkpoint matches this run."""
    path = out_dir / "checkpoint.pt"
    history = out_dir / "history.jsonl"
    if not path.exists():
        history.unlink(missing_ok=True)
        (out_dir / "model.pt").unlink(missing_ok=True)
        return state
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if (checkpoint["model_name"] != model_name
            or checkpoint["config"] != json.dumps(config, sort_keys=True)):
        log.warning("%s: checkpoint is from another model or config; starting over", path)
        for stale in (path, history, out_dir / "model.pt"):
            stale.unlink(missing_ok=True)
        return state
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    generator.set_state(checkpoint["generator"])
    torch.set_rng_state(checkpoint["torch_rng"])
    state = dict(checkpoint["state"])
    # Epochs logged after the checkpoint was written are redone: drop their lines.
    rows = [r for r in atomic.read_json_lines(history) if r.get("epoch", 0) <= state["epoch"]]
    atomic.write_text(history, "".join(json.dumps(r) + "\n" for r in rows))
    log.info("%s: resuming after epoch %d (best val NRMSE %.4f at epoch %d)", model_name,
             state["epoch"], state["best_nrmse"], state["best_epoch"])
    return state


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None
