"""Training one model on the window cache, with early stopping and crash-safe resume.

The model fits the split's training subjects and judges itself on its tune subjects (early
stopping, the best epoch): it never reads a validation window, which compare reads once.

Outputs in ``out_dir``: ``model.pt`` (best weights, a plain state dict that loads with
``weights_only=True``), ``model.json`` (what was trained, how, how well; written last,
so its presence means the training finished), ``history.jsonl`` (one line per epoch) and
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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overnight import atomic, augment, distributed
from overnight.config import TrainConfig
from overnight.evaluation import nrmse, predict
from overnight.features.cache import open_features
from overnight.hbn.channels import positions_m
from overnight.hbn.events import PLAUSIBLE_RT_S
from overnight.models import MODELS, RTModel, build_model
from overnight.provenance import code_version
from overnight.units import to_samples
from overnight.windows.cache import WindowCache, load_windows, open_cache
from overnight.windows.split import read_split

log = logging.getLogger(__name__)

RT_CLAMP_TAIL = 0.005  # share of training RTs below (and above) the clamp range
# sensor rotations drawn once per training (train.sensor_rotation_deg), each batch window
# taking one at random: 4 MB of matrices
ROTATIONS_IN_BANK = 64


def train_model(model_name: str, windows_path: Path, split_path: Path, out_dir: Path,
                cfg: TrainConfig, features_path: Path | None = None,
                on_epoch: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train ``model_name`` on the split's training subjects; early-stop on the tune NRMSE.

    Resumes from ``out_dir/checkpoint.pt`` when it holds the same model and config. With
    ``cfg.ensemble`` > 1, trains that many seeds in ``out_dir/member-<k>/`` (each resumable)
    and writes their mean as the model. Returns the content of ``model.json``.
    ``on_epoch(epoch, tune_nrmse)`` is called on rank 0 after each epoch scored on the tune
    subjects, once its checkpoint is written; an exception it raises stops the training
    (the hyperparameter search prunes trials this way).
    """
    if model_name not in MODELS:
        raise ValueError(f"model={model_name!r}: expected one of {sorted(MODELS)}")
    uses_features = MODELS[model_name].reads_features()
    if uses_features and features_path is None:
        raise ValueError(f"model {model_name!r} needs the feature cache: pass features_path")
    out_dir.mkdir(parents=True, exist_ok=True)
    reason = MODELS[model_name].unavailable()
    if reason is not None:
        return _record_not_run(model_name, out_dir, reason)
    here = distributed.world()
    device = distributed.device_for(resolve_device(cfg.device), here)
    with distributed.process_group(here, device):
        if cfg.ensemble > 1:
            return _train_ensemble(model_name, windows_path, split_path, out_dir, cfg,
                                   features_path, here, on_epoch)
        features_path = features_path if uses_features else None
        if not cfg.refit:
            return _train_one(model_name, windows_path, split_path, out_dir, cfg,
                              features_path, here, device, on_epoch=on_epoch)
        selection = _train_one(model_name, windows_path, split_path, out_dir / "selection",
                               cfg, features_path, here, device, on_epoch=on_epoch)
        return _train_one(model_name, windows_path, split_path, out_dir, cfg, features_path,
                          here, device, selection)


def _train_one(model_name: str, windows_path: Path, split_path: Path, out_dir: Path,
               cfg: TrainConfig, features_path: Path | None, here: distributed.World,
               device: torch.device, selection: dict[str, Any] | None = None,
               on_epoch: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """One training: fit the training subjects, keep the epoch best on the tune subjects.
    With ``selection`` (the record of such a run), fit the training and the tune subjects
    for as many epochs as it kept, with nothing to select on, and record its tune score."""
    # Derived state: precision, the batch of each process.
    autocast_dtype = resolve_autocast(cfg.precision, device)
    if cfg.batch_size % here.size:
        raise ValueError(f"train.batch_size={cfg.batch_size} must divide by the {here.size} "
                         "training processes (NPROC x NNODES): it is the effective batch")
    batch_per_process = cfg.batch_size // here.size
    log.info("training %s on %s (%s)%s", model_name, device,
             "bf16 autocast" if autocast_dtype else "fp32",
             f", process {here.rank} of {here.size}, {batch_per_process} windows a step"
             if here.size > 1 else "")

    # Data: this process's share, on the device when it fits, else streamed in slabs.
    fit_sides, tune_side = (("train", "tune"), None) if selection else (("train",), "tune")
    train, tune, y_tune_s, stats = load_split_sides(windows_path, split_path, features_path,
                                                    device, cfg, here, fit_sides, tune_side)
    max_epochs = selection["best_epoch"] if selection else cfg.max_epochs
    steps_per_epoch = math.ceil(len(train) / batch_per_process)

    # Model, optimizer, schedule: the LR follows the effective batch.
    window_spec = _window_spec(windows_path)
    model_args = _model_args(model_name, cfg, window_spec)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = build_model(model_name, **model_args).to(device)
    model.set_standardization(stats)
    trainer = distributed.data_parallel(_Standardized(model), device, here)
    # What is scored and saved: the trained weights, or their moving average.
    ema = (torch.optim.swa_utils.AveragedModel(
        model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(
            math.exp(-1.0 / (cfg.ema_epochs * steps_per_epoch))),
        use_buffers=True) if cfg.ema_epochs else None)
    scored = model if ema is None else ema.module
    augmentation = Augmentation(cfg, train.margin, window_spec["sfreq_hz"])
    batch_ratio = cfg.batch_size / cfg.lr_reference_batch
    peak_lr = cfg.lr * (batch_ratio if cfg.lr_scaling == "linear" else math.sqrt(batch_ratio))
    optimizer = torch.optim.AdamW(model.parameters(), lr=peak_lr,
                                  weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _warmup_cosine(cfg.warmup_epochs * steps_per_epoch,
                                  cfg.max_epochs * steps_per_epoch))
    state = {"epoch": 0, "best_nrmse": math.inf, "best_epoch": 0, "epochs_since_best": 0,
             "train_seconds": 0.0}
    config_dict = dataclasses.asdict(cfg)
    state = _maybe_resume(out_dir, model_name, config_dict, model, optimizer, scheduler,
                          ema, state, here)

    # One loop: train an epoch, score the tune side (rank 0), checkpoint, log, stop.
    history_path = out_dir / "history.jsonl"
    while state["epoch"] < max_epochs and state["epochs_since_best"] < cfg.patience:
        started = time.perf_counter()
        epoch = state["epoch"] + 1
        generator = _epoch_seeds(cfg.seed, epoch, here)
        train_loss = _train_epoch(trainer, model, ema, train, optimizer, scheduler, generator,
                                  batch_per_process, cfg, augmentation, autocast_dtype, here)
        tune_nrmse = distributed.broadcast(
            nrmse(y_tune_s, evaluate(scored, tune, cfg.eval_batch_size))
            if here.is_main and tune is not None else math.nan, here)
        seconds = time.perf_counter() - started
        state["train_seconds"] += seconds
        state["epoch"] = epoch
        # a refit keeps its last epoch: the selection chose how many
        improved = selection is not None or (
            math.isfinite(tune_nrmse) and tune_nrmse < state["best_nrmse"] - cfg.min_delta)
        if improved:
            state.update(best_nrmse=tune_nrmse, best_epoch=epoch, epochs_since_best=0)
        else:
            state["epochs_since_best"] += 1
        lr = optimizer.param_groups[0]["lr"]
        if here.is_main:
            if improved:
                _save_state_dict(scored, out_dir / "model.pt")
            _save_checkpoint(out_dir / "checkpoint.pt", model_name, config_dict, model,
                             optimizer, scheduler, ema, state)
            atomic.append_line(history_path, json.dumps({
                "epoch": epoch, "train_loss": train_loss,
                "tune_nrmse": _json_float(tune_nrmse),
                "lr": lr, "seconds": round(seconds, 3)}))
        if selection is None:
            log.info("%s epoch %d/%d  train loss %.4f  tune NRMSE %.4f  (best %.4f @ %d)  "
                     "lr %.2e  %.1fs", model_name, epoch, max_epochs, train_loss, tune_nrmse,
                     state["best_nrmse"], state["best_epoch"], lr, seconds)
        else:
            log.info("%s refit epoch %d/%d (training and tune subjects)  train loss %.4f  "
                     "lr %.2e  %.1fs", model_name, epoch, max_epochs, train_loss, lr, seconds)
        if on_epoch is not None and selection is None and here.is_main:
            on_epoch(epoch, tune_nrmse)
        if not math.isfinite(train_loss):
            log.error("%s: training loss is %s at epoch %d; stopping", model_name,
                      train_loss, epoch)
            break

    if selection is not None:
        state["best_nrmse"] = selection["best_tune_nrmse"]
    if state["best_epoch"] == 0:
        raise RuntimeError(f"{model_name}: no epoch gave a finite tune NRMSE")
    meta = {
        "model": model_name, "inputs": list(MODELS[model_name].inputs),
        "model_args": model_args,
        "n_params": sum(p.numel() for p in model.parameters()),
        "world_size": here.size, "batch_per_process": batch_per_process,
        "effective_batch": cfg.batch_size, "peak_lr": peak_lr, "lr_scaling": cfg.lr_scaling,
        "best_epoch": state["best_epoch"], "best_tune_nrmse": state["best_nrmse"],
        "epochs_run": state["epoch"], "train_seconds": round(state["train_seconds"], 2),
        "n_train_windows": len(train) * here.size,
        "n_tune_windows": selection["n_tune_windows"] if selection else len(y_tune_s),
        "refit": None if selection is None else {
            "subjects": list(fit_sides), "epochs": max_epochs,
            "selection": "selection/ (fitted on the training subjects, its tune score is "
                         "best_tune_nrmse)"},
        "data_on_device": train.resident,
        "device": str(device), "precision": "bf16" if autocast_dtype else "fp32",
        "stopped": "the selection's epochs" if selection else "early stopping"
        if state["epochs_since_best"] >= cfg.patience else "max epochs",
        "config": config_dict, "windows": str(windows_path), "split": str(split_path),
        "features": str(features_path) if features_path else None,
        "code_version": code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if here.is_main:
        atomic.write_json(out_dir / "model.json", meta)
    distributed.barrier(here)  # the files are there before any rank moves on
    log.info("%s: best tune NRMSE %.4f at epoch %d of %d, %.1f s", model_name,
             state["best_nrmse"], state["best_epoch"], state["epoch"], state["train_seconds"])
    return meta


def _record_not_run(model_name: str, out_dir: Path, reason: str) -> dict[str, Any]:
    """A model that cannot be built here: its model.json says why, so the comparison and
    the report show the row as not run and the night goes on."""
    log.warning("%s: not run: %s", model_name, reason)
    meta = {"model": model_name, "inputs": list(MODELS[model_name].inputs), "not_run": reason,
            "code_version": code_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic.write_json(out_dir / "model.json", meta)
    return meta


def _train_ensemble(model_name: str, windows_path: Path, split_path: Path, out_dir: Path,
                    cfg: TrainConfig, features_path: Path | None, here: distributed.World,
                    on_epoch: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Train ``cfg.ensemble`` seeds, then save their mean as one model in ``out_dir``."""
    members = [train_model(model_name, windows_path, split_path, out_dir / f"member-{k}",
                           dataclasses.replace(cfg, seed=cfg.seed + k, ensemble=1),
                           features_path, on_epoch)
               for k in range(cfg.ensemble)]
    if not here.is_main:  # rank 0 joins the members; it wrote their files
        return members[-1]
    model_args = {**members[0]["model_args"], "ensemble": cfg.ensemble}
    ensemble = build_model(model_name, **model_args)
    for k, member in enumerate(ensemble.members):
        member.load_state_dict(torch.load(out_dir / f"member-{k}" / "model.pt",
                                          map_location="cpu", weights_only=True))
    _save_state_dict(ensemble, out_dir / "model.pt")
    split = read_split(split_path)
    tune = load_windows(windows_path, split["tune"])
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
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic.write_json(out_dir / "model.json", meta)
    log.info("%s: ensemble of %d seeds, tune NRMSE %.4f (members %s)", model_name,
             cfg.ensemble, score, ", ".join(f"{m['best_tune_nrmse']:.4f}" for m in members))
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
    holds at most two slabs. With ``margin`` > 0 each window comes with that many samples
    on each side (for shifted crops); ``official`` cuts the window itself back out.
    ``weights`` (per window) make ``batches`` draw windows with those odds, with
    replacement, instead of each once.
    """

    def __init__(self, windows_path: Path, features_path: Path | None, rows: np.ndarray,
                 targets: np.ndarray, device: torch.device, resident: bool,
                 slab_windows: int, margin: int = 0,
                 weights: np.ndarray | None = None) -> None:
        self.windows_path, self.features_path = windows_path, features_path
        self.rows = rows  # cache rows, ascending
        self.device, self.resident, self.margin = device, resident, margin
        self.y = torch.from_numpy(targets.astype(np.float32)).to(device)  # (N,)
        self.weights = None if weights is None else torch.from_numpy(weights).double()
        n_slabs = max(1, math.ceil(len(rows) / slab_windows))
        self.slabs = np.array_split(np.arange(len(rows)), n_slabs)  # positions into rows
        self.x: torch.Tensor | None = None
        self.f: torch.Tensor | None = None
        if resident:
            self.x, self.f = self._load()

    def __len__(self) -> int:
        return len(self.rows)

    def official(self, x: torch.Tensor) -> torch.Tensor:
        """The windows themselves, (B, C, n_times), from a chunk of this side."""
        return x[..., self.margin:x.shape[-1] - self.margin] if self.margin else x

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
            order = self._order(np.arange(len(self.rows)), generator).to(self.device)
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                yield self.x[batch], self.f[batch] if self.f is not None else None, self.y[batch]
            return
        slab_order = torch.randperm(len(self.slabs), generator=generator).tolist()
        for positions, x, f in self._stream(slab_order):
            order = self._order(positions, generator).to(self.device)
            y = self.y[torch.from_numpy(positions).to(self.device)]
            for start in range(0, len(order), batch_size):
                batch = order[start:start + batch_size]
                yield x[batch], f[batch] if f is not None else None, y[batch]

    def _order(self, positions: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        """Indices into ``positions`` for one pass: a permutation, or weighted draws."""
        if self.weights is None:
            return torch.randperm(len(positions), generator=generator)
        return torch.multinomial(self.weights[torch.from_numpy(positions)], len(positions),
                                 replacement=True, generator=generator)

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
            x = cache.read_context(rows) if self.margin else cache.read_eeg(rows)  # (n, C, T)
        f = None
        if self.features_path is not None:
            with open_features(self.features_path) as features:
                f = features.read(rows)  # (n, F)
        return x, f


def load_split_sides(windows_path: Path, split_path: Path, features_path: Path | None,
                     device: torch.device, cfg: TrainConfig,
                     here: distributed.World = distributed.ONE_PROCESS,
                     fit_sides: tuple[str, ...] = ("train",), tune_side: str | None = "tune"
                     ) -> tuple[SplitSide, SplitSide | None, np.ndarray,
                                dict[str, torch.Tensor]]:
    """This process's share of the windows to fit (the subjects of ``fit_sides``) and (rank
    0 only) the tune side on ``device``, the tune targets in seconds, and the
    standardisation fitted on the whole fitting side. The validation subjects are not read;
    with ``tune_side`` None there is no tune side (an empty array of targets).

    Every process gets the same number of training windows (every ``here.size``-th one, a
    few left over), so all take the same number of steps.
    """
    split = read_split(split_path)
    with open_cache(windows_path) as cache:
        subjects, rt, window_bytes = cache.subjects(), cache.rt(), cache.window_bytes
        margin = crop_margin(cfg, cache)
        context_bytes = window_bytes * (cache.n_times + 2 * margin) // cache.n_times
    fit_subjects = [s for side in fit_sides for s in split[side]]
    train_rows = np.flatnonzero(np.isin(subjects, fit_subjects))
    tune_rows = np.flatnonzero(np.isin(subjects, split[tune_side] if tune_side else []))
    if len(train_rows) == 0 or (tune_side and len(tune_rows) == 0):
        raise ValueError(f"{split_path}: the split selects {len(train_rows)} training and "
                         f"{len(tune_rows)} tune windows of {windows_path}")
    target_mean, target_std = rt[train_rows].mean(), float(_safe_std(rt[train_rows].std()))
    share = train_rows[here.rank::here.size][:len(train_rows) // here.size]
    # the smallest budget of any rank: all keep or all stream, so all take the same steps
    budget = distributed.min_across(_memory_budget(device, cfg), here, device)
    train_resident = len(share) * context_bytes <= budget
    tune_resident = (len(share) * context_bytes * train_resident
                     + len(tune_rows) * window_bytes) <= budget
    train = SplitSide(windows_path, features_path, share,
                      (rt[share] - target_mean) / target_std, device, train_resident,
                      cfg.slab_windows, margin,
                      _subject_weights(subjects[share]) if cfg.balanced_subjects else None)
    tune = (SplitSide(windows_path, features_path, tune_rows, rt[tune_rows], device,
                      tune_resident, cfg.slab_windows) if here.is_main and tune_side else None)
    stats = {"target_mean": torch.tensor(target_mean), "target_std": torch.tensor(target_std),
             **rt_range(rt[train_rows]), **_input_stats(train, here)}
    log.info("data: %d training windows (%d subjects of %s, %s%s), %d tune windows "
             "(%d subjects%s)", len(share), len(fit_subjects), " and ".join(fit_sides),
             "on the device" if train_resident else "streamed",
             f"; this process's share of {len(train_rows)}" if here.size > 1 else "",
             len(tune_rows), len(split[tune_side]) if tune_side else 0,
             "" if tune is None else ", on the device" if tune_resident else ", streamed")
    return train, tune, rt[tune_rows], stats


def crop_margin(cfg: TrainConfig, cache: WindowCache) -> int:
    """The margin the training side reads around each window: the cache's own when
    ``crop_shift_s`` asks for shifted crops, else 0.

    Raises
    ------
    ValueError
        The cache keeps less margin than the shift needs.
    """
    if not cfg.crop_shift_s:
        return 0
    needed = to_samples(cfg.crop_shift_s, cache.sfreq_hz)
    if needed > cache.margin_samples:
        raise ValueError(f"train.crop_shift_s={cfg.crop_shift_s:g} needs {needed} samples on "
                         f"each side of every window, but {cache.path} keeps "
                         f"{cache.margin_samples} (windows.margin_s); make the window cache "
                         "with a margin at least as wide, or lower the shift")
    return cache.margin_samples


def _subject_weights(subjects: np.ndarray) -> np.ndarray:
    """Per window, 1 / its subject's window count: every subject drawn equally often."""
    _, inverse, counts = np.unique(subjects, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def rt_range(rt_s: np.ndarray) -> dict[str, torch.Tensor]:
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


def _input_stats(train: SplitSide,
                 here: distributed.World = distributed.ONE_PROCESS) -> dict[str, torch.Tensor]:
    """Per-channel input mean/std and per-feature mean/std, accumulated in float64 (summed
    over every process's share: the statistics of the whole training side)."""
    sums: dict[str, torch.Tensor] = {}
    for x, f, _ in train.in_order():
        for chunk_x, chunk_f in _chunks(train.official(x), f, 4096):
            xd = chunk_x.double()
            _accumulate(sums, "x", xd.sum(dim=(0, 2)), (xd * xd).sum(dim=(0, 2)),
                        chunk_x.shape[0] * chunk_x.shape[2])
            if chunk_f is not None:
                fd = chunk_f.double()
                _accumulate(sums, "f", fd.sum(dim=0), (fd * fd).sum(dim=0), chunk_f.shape[0])
    for key, value in sums.items():
        sums[key] = distributed.sum_across(torch.as_tensor(value, dtype=torch.float64)
                                           .to(train.device), here).cpu()
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


class _Standardized(torch.nn.Module):
    """The model's standardised output as ``forward``: what the loss sees, and what DDP
    wraps (it hooks ``forward`` only)."""

    def __init__(self, model: RTModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        return self.model.standardized_output(x, features)


def _epoch_seeds(seed: int, epoch: int, here: distributed.World) -> torch.Generator:
    """The shuffle's generator for one epoch of one rank, and the dropout's seed: from the
    epoch, not from a saved state, so a resumed run redraws them whatever its world."""
    epoch_seed = seed + 1_000_003 * epoch + 7_919 * here.rank
    torch.manual_seed(epoch_seed)
    return torch.Generator().manual_seed(epoch_seed)


class Augmentation:
    """The training batch as the model sees it: ``cfg``'s augmentations, in the order of
    ``overnight.augment``'s list (crops first: the others act on what the model sees)."""

    def __init__(self, cfg: TrainConfig, margin: int, sfreq_hz: float) -> None:
        self.cfg, self.margin, self.sfreq_hz = cfg, margin, sfreq_hz
        self.max_shift = to_samples(cfg.crop_shift_s, sfreq_hz)
        self.rotations = (augment.rotation_bank(positions_m(), cfg.sensor_rotation_deg,
                                                ROTATIONS_IN_BANK,
                                                np.random.default_rng(cfg.seed))
                          if cfg.sensor_rotation_deg else None)

    def __call__(self, model: RTModel, x: torch.Tensor, features: torch.Tensor | None,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        cfg = self.cfg
        if self.margin:
            x, shift = augment.shifted_crops(x, x.shape[-1] - 2 * self.margin, self.margin,
                                             self.max_shift)
            y = y - shift.to(y.dtype) / (self.sfreq_hz * model.target_std)  # RT - shift
            # The cached features are the official window's; a model that reads features
            # computes the crop's itself (the same code the submission runs).
            features = None
        if self.rotations is not None:
            self.rotations = self.rotations.to(x.device)
            x = augment.rotate_sensors(x, self.rotations)
        if cfg.scale_sd or cfg.channel_scale_sd:
            x = augment.scale(x, cfg.scale_sd, cfg.channel_scale_sd)
        if cfg.channel_dropout:
            x = augment.drop_channels(x, cfg.channel_dropout, model.input_mean)
        if cfg.noise_sd:
            x = augment.add_noise(x, cfg.noise_sd, model.input_std)
        if cfg.mixup_alpha:
            x, features, y = augment.mixup(x, features, y, cfg.mixup_alpha)
        return x, features, y


def _train_epoch(trainer: torch.nn.Module, model: RTModel,
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
        x, features, y = augmentation(model, *batch)
        with torch.autocast(train.device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            out = trainer(x, features).squeeze(1)
        loss = torch.nn.functional.mse_loss(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        loss_sum += loss.detach() * len(y)
        windows += len(y)
    totals = torch.stack([loss_sum, torch.tensor(float(windows), device=loss_sum.device)])
    summed_loss, summed_windows = distributed.sum_across(totals, here).tolist()
    return summed_loss / summed_windows


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
               "normalization": cfg.normalization, "backbone": cfg.backbone,
               "sfreq_hz": window_spec["sfreq_hz"],
               "window_start_s": window_spec["window_start_s"]}
    accepted = inspect.signature(MODELS[model_name]).parameters
    return {name: value for name, value in offered.items() if name in accepted}


def _save_state_dict(model: RTModel, path: Path) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic.atomic_path(path) as tmp:
        torch.save(state, tmp)


def _save_checkpoint(path: Path, model_name: str, config: dict[str, Any], model: RTModel,
                     optimizer: torch.optim.Optimizer, scheduler: Any,
                     ema: torch.optim.swa_utils.AveragedModel | None,
                     state: dict[str, Any]) -> None:
    checkpoint = {"model_name": model_name, "config": json.dumps(config, sort_keys=True),
                  "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(), "state": state,
                  "ema": None if ema is None else ema.state_dict()}
    with atomic.atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def _maybe_resume(out_dir: Path, model_name: str, config: dict[str, Any], model: RTModel,
                  optimizer: torch.optim.Optimizer, scheduler: Any,
                  ema: torch.optim.swa_utils.AveragedModel | None, state: dict[str, Any],
                  here: distributed.World) -> dict[str, Any]:
    """Continue after the last finished epoch when the checkpoint matches this run (every
    rank reads it; rank 0 tidies the files)."""
    path = out_dir / "checkpoint.pt"
    history = out_dir / "history.jsonl"
    checkpoint = (torch.load(path, map_location="cpu", weights_only=True)
                  if path.exists() else None)
    distributed.barrier(here)  # every rank has read it before rank 0 may remove it
    if checkpoint is None or (checkpoint["model_name"] != model_name
                              or checkpoint["config"] != json.dumps(config, sort_keys=True)):
        if checkpoint is not None:
            log.warning("%s: checkpoint is from another model or config; starting over", path)
        if here.is_main:
            for stale in (path, history, out_dir / "model.pt"):
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
    log.info("%s: resuming after epoch %d (best tune NRMSE %.4f at epoch %d)", model_name,
             state["epoch"], state["best_nrmse"], state["best_epoch"])
    return state


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None
