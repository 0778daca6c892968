"""Serving one side of the split to training: its windows on the device, in batches.

The side's windows live on the training device when they fit (``device.memory_budget``),
else every pass streams contiguous slabs from HDF5. ``load_split_sides`` also fits what the
model's buffers hold: the input, feature and target standardisation and the clamp range, on
the training side alone. The validation subjects are never read here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from overnight import distributed
from overnight.config import TrainConfig
from overnight.features.cache import open_features
from overnight.hbn.channels import REFERENCE_CHANNEL
from overnight.hbn.events import PLAUSIBLE_RT_S
from overnight.training.device import memory_budget
from overnight.units import to_samples
from overnight.windows.cache import WindowCache, open_cache
from overnight.windows.split import read_split

log = logging.getLogger(__name__)

RT_CLAMP_TAIL = 0.005  # share of training RTs below (and above) the clamp range


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
        channels = cache.ch_names
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
    budget = distributed.min_across(memory_budget(device, cfg), here, device)
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
             **rt_range(rt[train_rows]), **_input_stats(train, here),
             "input_mask": input_mask(channels, cfg.drop_reference)}
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


def input_mask(channels: Sequence[str], drop_reference: bool) -> torch.Tensor:
    """(C, 1): 0 for the recording reference (``REFERENCE_CHANNEL``) when it is dropped,
    else 1."""
    mask = torch.ones(len(channels), 1)
    if drop_reference and REFERENCE_CHANNEL in channels:
        mask[list(channels).index(REFERENCE_CHANNEL)] = 0.0
    return mask


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
