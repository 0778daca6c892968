"""Training one model on the window cache, with early stopping and crash-safe resume.

Outputs in ``out_dir``: ``model.pt`` (best weights, a plain state dict that loads with
``weights_only=True``), ``model.json`` (what was trained, how, how well; written last,
so its presence means the training finished), ``history.jsonl`` (one line per epoch) and
``checkpoint.pt`` (everything needed to resume after a crash, rewritten every epoch).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overnight import atomic
from overnight.config import TrainConfig
from overnight.evaluation import nrmse, predict
from overnight.features.cache import open_features
from overnight.hbn.events import PLAUSIBLE_RT_S
from overnight.models import MODELS, RTModel, build_model
from overnight.provenance import code_version
from overnight.windows.cache import load_windows, open_cache
from overnight.windows.split import read_split

log = logging.getLogger(__name__)

RT_CLAMP_TAIL = 0.005  # share of training RTs below (and above) the clamp range


def train_model(model_name: str, windows_path: Path, split_path: Path, out_dir: Path,
                cfg: TrainConfig, features_path: Path | None = None) -> dict[str, Any]:
    """Train ``model_name`` on the split's training subjects; early-stop on validation NRMSE.

    Resumes from ``out_dir/checkpoint.pt`` when it holds the same model and config. With
    ``cfg.ensemble`` > 1, trains that many seeds in ``out_dir/member-<k>/`` (each resumable)
    and writes their mean as the model. Returns the content of ``model.json``.
    """
    if model_name not in MODELS:
        raise ValueError(f"model={model_name!r}: expected one of {sorted(MODELS)}")
    uses_features = MODELS[model_name].uses_features
    if uses_features and features_path is None:
        raise ValueError(f"model {model_name!r} needs the feature cache: pass features_path")
    out_dir.mkdir(parents=True, exist_ok=True)
    reason = MODELS[model_name].unavailable()
    if reason is not None:
        return _record_not_run(model_name, out_dir, reason)
    if cfg.ensemble > 1:
        return _train_ensemble(model_name, windows_path, split_path, out_dir, cfg,
                               features_path)

    # Derived state: device, seed, precision.
    device = resolve_device(cfg.device)
    autocast_dtype = resolve_autocast(cfg.precision, device)
    torch.manual_seed(cfg.seed)
    log.info("training %s on %s (%s)", model_name, device,
             "bf16 autocast" if autocast_dtype else "fp32")

    # Data: on the device when it fits, else streamed from HDF5 in slabs.
    train, val, y_val_s, stats = load_split_sides(
        windows_path, split_path, features_path if uses_features else None, device, cfg)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)

    # Model, optimizer, schedule.
    window_spec = _window_spec(windows_path)
    model_args = _model_args(model_name, cfg, window_spec)
    model = build_model(model_name, **model_args).to(device)
    model.set_standardization(stats)
    batch_ratio = cfg.batch_size / cfg.lr_reference_batch
    lr = cfg.lr * (batch_ratio if cfg.lr_scaling == "linear" else math.sqrt(batch_ratio))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
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
        train_loss = _train_epoch(model, train, optimizer, scheduler, generator, cfg,
                                  autocast_dtype)
        val_nrmse = nrmse(y_val_s, evaluate(model, val, cfg.eval_batch_size))
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
        "n_train_windows": len(train), "n_val_windows": len(val),
        "data_on_device": train.resident,
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


def _record_not_run(model_name: str, out_dir: Path, reason: str) -> dict[str, Any]:
    """A model that cannot be built here: its model.json says why, so the comparison and
    the report show the row as not run and the night goes on."""
    log.warning("%s: not run: %s", model_name, reason)
    meta = {"model": model_name, "not_run": reason, "code_version": code_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic.write_json(out_dir / "model.json", meta)
    return meta


def _train_ensemble(model_name: str, windows_path: Path, split_path: Path, out_dir: Path,
                    cfg: TrainConfig, features_path: Path | None) -> dict[str, Any]:
    """Train ``cfg.ensemble`` seeds, then save their mean as one model in ``out_dir``."""
    members = [train_model(model_name, windows_path, split_path, out_dir / f"member-{k}",
                           dataclasses.replace(cfg, seed=cfg.seed + k, ensemble=1),
                           features_path)
               for k in range(cfg.ensemble)]
    model_args = {**members[0]["model_args"], "ensemble": cfg.ensemble}
    ensemble = build_model(model_name, **model_args)
    for k, member in enumerate(ensemble.members):
        member.load_state_dict(torch.load(out_dir / f"member-{k}" / "model.pt",
                                          map_location="cpu", weights_only=True))
    _save_state_dict(ensemble, out_dir / "model.pt")
    split = read_split(split_path)
    val = load_windows(windows_path, split["val"])
    score = nrmse(val.rt.astype(np.float64), predict(ensemble, val.eeg, cfg.eval_batch_size))
    meta = {**members[0], "model_args": model_args,
            "n_params": sum(p.numel() for p in ensemble.parameters()),
            "best_val_nrmse": score,
            "best_epoch": max(m["best_epoch"] for m in members),
            "epochs_run": max(m["epochs_run"] for m in members),
            "train_seconds": round(sum(m["train_seconds"] for m in members), 2),
            "config": dataclasses.asdict(cfg),
            "members": [{"seed": m["config"]["seed"], "best_val_nrmse": m["best_val_nrmse"],
                         "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"]}
                        for m in members],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic.write_json(out_dir / "model.json", meta)
    log.info("%s: ensemble of %d seeds, val NRMSE %.4f (members %s)", model_name,
             cfg.ensemble, score, ", ".join(f"{m['best_val_nrmse']:.4f}" for m in members))
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


class SplitSide:
    """The windows of one side of the split, served on the training device.

    When they fit (``resident``) they are loaded onto the device once, slab by slab, and
    batches are drawn there; otherwise every pass streams contiguous slabs from the HDF5
    caches, reading the next slab while the current one is in use. Either way the host
    holds at most two slabs.
    """

    def __init__(self, windows_path: Path, features_path: Path | None, rows: np.ndarray,
                 targets: np.ndarray, device: torch.device, resident: bool,
                 slab_windows: int) -> None:
        self.windows_path, self.features_path = windows_path, features_path
        self.rows = rows  # cache rows, ascending
        self.device, self.resident = device, resident
        self.y = torch.from_numpy(targets.astype(np.float32)).to(device)  # (N,)
        n_slabs = max(1, math.ceil(len(rows) / slab_windows))
        self.slabs = np.array_split(np.arange(len(rows)), n_slabs)  # positions into rows
        self.x: torch.Tensor | None = None
        self.f: torch.Tensor | None = None
        if resident:
            self.x, self.f = self._load()

    def __len__(self) -> int:
        return len(self.rows)

    def in_order(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, np.ndarray]]:
        """(x, features, positions) chunks covering the side once, in cache order."""
        if self.x is not None:
            yield self.x, self.f, np.arange(len(self.rows))
            return
        for positions, x, f in self._stream(list(range(len(self.slabs)))):
            yield x, f, positions

    def batches(self, batch_size: int, generator: torch.Generator
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
        """(x, features, targets) batches in a seeded random order (slab order, then
        within the slab, when streaming)."""
        if self.x is not None:
            order = torch.randperm(len(self.rows), generator=generator).to(self.device)
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                yield self.x[batch], self.f[batch] if self.f is not None else None, self.y[batch]
            return
        slab_order = torch.randperm(len(self.slabs), generator=generator).tolist()
        for positions, x, f in self._stream(slab_order):
            order = torch.randperm(len(positions), generator=generator).to(self.device)
            y = self.y[torch.from_numpy(positions).to(self.device)]
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                yield x[batch], f[batch] if f is not None else None, y[batch]

    def _load(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = f = None
        for positions, x_slab, f_slab in self._stream(list(range(len(self.slabs)))):
            if x is None:
                x = torch.empty((len(self.rows), *x_slab.shape[1:]), dtype=x_slab.dtype,
                                device=self.device)
                if f_slab is not None:
                    f = torch.empty((len(self.rows), f_slab.shape[1]), dtype=f_slab.dtype,
                                    device=self.device)
            x[positions[0]:positions[-1] + 1] = x_slab
            if f is not None:
                f[positions[0]:positions[-1] + 1] = f_slab
        return x, f

    def _stream(self, slab_order: list[int]
                ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor | None]]:
        """Slabs on the device, the next one read from disk while the caller uses this one."""
        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = reader.submit(self._read_slab, self.slabs[slab_order[0]])
            for i, slab in enumerate(slab_order):
                x, f = pending.result()
                if i + 1 < len(slab_order):
                    pending = reader.submit(self._read_slab, self.slabs[slab_order[i + 1]])
                yield (self.slabs[slab], torch.from_numpy(x).to(self.device),
                       torch.from_numpy(f).to(self.device) if f is not None else None)

    def _read_slab(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        rows = self.rows[positions]
        with open_cache(self.windows_path) as cache:
            x = cache.read_eeg(rows)  # (n, C, T)
        f = None
        if self.features_path is not None:
            with open_features(self.features_path) as features:
                f = features.read(rows)  # (n, F)
        return x, f


def load_split_sides(windows_path: Path, split_path: Path, features_path: Path | None,
                     device: torch.device, cfg: TrainConfig
                     ) -> tuple[SplitSide, SplitSide, np.ndarray, dict[str, torch.Tensor]]:
    """Both sides of the split on ``device``, the validation targets in seconds, and the
    standardisation fitted on the training side only."""
    split = read_split(split_path)
    with open_cache(windows_path) as cache:
        subjects, rt, window_bytes = cache.subjects(), cache.rt(), cache.window_bytes
    train_rows = np.flatnonzero(np.isin(subjects, split["train"]))
    val_rows = np.flatnonzero(np.isin(subjects, split["val"]))
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(f"{split_path}: the split selects {len(train_rows)} training and "
                         f"{len(val_rows)} validation windows of {windows_path}")
    target_mean, target_std = rt[train_rows].mean(), float(_safe_std(rt[train_rows].std()))
    budget = _memory_budget(device, cfg)
    train_resident = len(train_rows) * window_bytes <= budget
    val_resident = (len(train_rows) * train_resident + len(val_rows)) * window_bytes <= budget
    train = SplitSide(windows_path, features_path, train_rows,
                      (rt[train_rows] - target_mean) / target_std, device, train_resident,
                      cfg.slab_windows)
    val = SplitSide(windows_path, features_path, val_rows, rt[val_rows], device, val_resident,
                    cfg.slab_windows)
    stats = {"target_mean": torch.tensor(target_mean), "target_std": torch.tensor(target_std),
             **_rt_range(rt[train_rows]), **_input_stats(train)}
    log.info("data: %d training windows (%d subjects, %s), %d validation windows "
             "(%d subjects, %s)", len(train), len(split["train"]),
             "on the device" if train_resident else "streamed",
             len(val), len(split["val"]), "on the device" if val_resident else "streamed")
    return train, val, rt[val_rows], stats


def _rt_range(rt_s: np.ndarray) -> dict[str, torch.Tensor]:
    """The range predictions are clamped to: the training RTs' central 99 % (a stray RT
    does not widen it), inside the plausible range."""
    low_limit, high_limit = PLAUSIBLE_RT_S
    low, high = np.quantile(rt_s, [RT_CLAMP_TAIL, 1.0 - RT_CLAMP_TAIL])
    low = min(max(float(low), low_limit), high_limit)
    high = max(min(float(high), high_limit), low)
    return {"rt_min": torch.tensor(low), "rt_max": torch.tensor(high)}


def _memory_budget(device: torch.device, cfg: TrainConfig) -> float:
    """Bytes of windows that may live on the device (the host, for CPU training)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.6 * free
    return cfg.host_cache_gb * 1e9


def _input_stats(train: SplitSide) -> dict[str, torch.Tensor]:
    """Per-channel input mean/std and per-feature mean/std, accumulated in float64."""
    sums: dict[str, torch.Tensor] = {}
    for x, f, _ in train.in_order():
        for chunk_x, chunk_f in _chunks(x, f, 4096):
            xd = chunk_x.double()
            _accumulate(sums, "x", xd.sum(dim=(0, 2)), (xd * xd).sum(dim=(0, 2)),
                        chunk_x.shape[0] * chunk_x.shape[2])
            if chunk_f is not None:
                fd = chunk_f.double()
                _accumulate(sums, "f", fd.sum(dim=0), (fd * fd).sum(dim=0), chunk_f.shape[0])
    stats = dict(zip(("input_mean", "input_std"), _mean_std(sums, "x"), strict=True))
    if "f_sum" in sums:
        stats.update(zip(("feature_mean", "feature_std"), _mean_std(sums, "f"), strict=True))
    return stats


def _chunks(x: torch.Tensor, f: torch.Tensor | None, size: int
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    for start in range(0, len(x), size):
        yield x[start:start + size], f[start:start + size] if f is not None else None


def _accumulate(sums: dict[str, torch.Tensor], key: str, total: torch.Tensor,
                total_sq: torch.Tensor, count: int) -> None:
    for name, value in ((f"{key}_sum", total), (f"{key}_sq", total_sq)):
        sums[name] = sums.get(name, 0) + value.cpu()
    sums[f"{key}_n"] = sums.get(f"{key}_n", 0) + count


def _mean_std(sums: dict[str, torch.Tensor], key: str) -> tuple[torch.Tensor, torch.Tensor]:
    mean = sums[f"{key}_sum"] / sums[f"{key}_n"]
    var = (sums[f"{key}_sq"] / sums[f"{key}_n"] - mean**2).clamp(min=0)
    return mean, torch.from_numpy(_safe_std(var.sqrt().numpy()))


def _safe_std(std: np.ndarray) -> np.ndarray:
    return np.where(std > 0, std, 1.0)


def evaluate(model: RTModel, side: SplitSide, batch_size: int) -> np.ndarray:
    """Predictions (seconds, float64) for every window of ``side``, in its order."""
    out = np.empty(len(side))
    for x, f, positions in side.in_order():
        out[positions] = predict(model, x, batch_size, f)
    return out


def _train_epoch(model: RTModel, train: SplitSide, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
                 cfg: TrainConfig, autocast_dtype: torch.dtype | None) -> float:
    """One pass over the training windows in a seeded random order; returns the mean loss."""
    model.train()
    total = torch.zeros((), device=train.device)  # summed on the device: no host sync per step
    for x, features, y in train.batches(cfg.batch_size, generator):
        with torch.autocast(train.device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            out = model.standardized_output(x, features).squeeze(1)
        loss = torch.nn.functional.mse_loss(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        total += loss.detach() * len(y)
    return float(total) / len(train)


def _warmup_cosine(warmup_steps: int, total_steps: int):
    """LR multiplier: linear warm-up, then cosine decay to 5 % of the peak."""
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))
    return multiplier


def _window_spec(windows_path: Path) -> dict[str, Any]:
    with open_cache(windows_path) as cache:
        return {"sfreq_hz": cache.sfreq_hz, "window_start_s": cache.window_start_s,
                "n_chans": cache.n_chans, "n_times": cache.n_times}


def _model_args(model_name: str, cfg: TrainConfig, window_spec: dict[str, Any]
                ) -> dict[str, Any]:
    """What the window cache and the config offer, as far as the model's constructor takes it
    (EEGNeX keeps braindecode's own filters and dropout)."""
    offered = {"n_chans": window_spec["n_chans"], "n_times": window_spec["n_times"],
               "n_filters": cfg.n_filters, "dropout": cfg.dropout,
               "normalization": cfg.normalization, "sfreq_hz": window_spec["sfreq_hz"],
               "window_start_s": window_spec["window_start_s"]}
    accepted = inspect.signature(MODELS[model_name]).parameters
    return {name: value for name, value in offered.items() if name in accepted}


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
