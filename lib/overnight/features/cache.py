"""Stage features and the feature cache's schema: the one module that writes and reads it.

Dataset ``features`` (N, F) float32, one row per window of the window cache, in its order;
attributes ``feature_names``, ``sfreq_hz``, ``window_start_s``, ``n_windows``, ``source``,
``source_created``, ``config``, ``code_version``, ``created``, ``compile_s``, ``compute_s``
and ``windows_per_s``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from overnight.atomic import atomic_path
from overnight.checks import existing_file
from overnight.cli import progress as progress_bar
from overnight.config import FeaturesConfig
from overnight.features.kernels import compute_features
from overnight.features.spec import FEATURE_NAMES, N_CHANS
from overnight.provenance import code_version
from overnight.windows.cache import WindowCache, open_cache, read_rows

log = logging.getLogger(__name__)

FEATURES = "features"


def build_feature_cache(windows_path: Path, out_path: Path, cfg: FeaturesConfig,
                        progress: bool = True) -> dict[str, Any]:
    """Compute the features of every window in a window cache and write them atomically.

    Reads the windows in slabs of ``cfg.slab_windows`` (one contiguous read per slab into a
    reused buffer). The Numba compile time is measured on one window before the timed pass;
    ``compute_s`` is the pass itself (reading, computing and writing).

    Parameters
    ----------
    windows_path : Path
        The window cache.
    out_path : Path
        The feature cache to write; replaced only when the whole pass succeeds.
    cfg : FeaturesConfig
        The ``[features]`` settings.
    progress : bool, default True
        Show a progress bar over slabs.

    Returns
    -------
    dict
        ``out``, ``n_windows``, ``n_features``, ``compile_s``, ``compute_s``,
        ``windows_per_s``.

    Raises
    ------
    TypeError
        ``cfg`` is not a FeaturesConfig, or the windows are not float32.
    ValueError
        ``windows_path`` is not a window cache.
    """
    if not isinstance(cfg, FeaturesConfig):
        raise TypeError(f"cfg: expected a FeaturesConfig, got {type(cfg).__name__}")
    windows_path = Path(windows_path).resolve()
    with open_cache(windows_path) as cache:
        if cache.eeg.dtype != np.float32:
            raise TypeError(f"{windows_path}: eeg has dtype {cache.eeg.dtype}, expected float32")
        n_windows = cache.n_windows

        start = time.perf_counter()
        compute_features(np.zeros((1, N_CHANS, cache.n_times), np.float32), cache.sfreq_hz,
                         cache.window_start_s)
        compile_s = time.perf_counter() - start
        log.info("features: Numba kernel ready in %.2f s (compile or cache load)", compile_s)

        with atomic_path(out_path, suffix=".h5") as tmp, h5py.File(tmp, "w") as dst:
            features = dst.create_dataset(FEATURES, shape=(n_windows, len(FEATURE_NAMES)),
                                          dtype=np.float32)
            start = time.perf_counter()
            _compute_slabs(cache, features, cfg.slab_windows, progress)
            compute_s = time.perf_counter() - start
            windows_per_s = n_windows / compute_s if compute_s > 0 else 0.0
            dst.attrs.update({
                "feature_names": list(FEATURE_NAMES),
                "sfreq_hz": cache.sfreq_hz,
                "window_start_s": cache.window_start_s,
                "n_windows": n_windows,
                "source": str(windows_path),
                "source_created": cache.created,
                "config": json.dumps({"features": dataclasses.asdict(cfg)}),
                "code_version": code_version(),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "compile_s": compile_s,
                "compute_s": compute_s,
                "windows_per_s": windows_per_s,
            })
    log.info("features: %d windows x %d features in %.2f s (%.0f windows/s) -> %s",
             n_windows, len(FEATURE_NAMES), compute_s, windows_per_s, out_path)
    return {"out": str(out_path), "n_windows": n_windows, "n_features": len(FEATURE_NAMES),
            "compile_s": compile_s, "compute_s": compute_s, "windows_per_s": windows_per_s}


class FeatureCache:
    """An open feature cache (read only)."""

    def __init__(self, h5: h5py.File) -> None:
        self._h5 = h5

    @property
    def features(self) -> h5py.Dataset:
        """(N, F) float32, rows in window-cache order."""
        return self._h5[FEATURES]

    @property
    def names(self) -> list[str]:
        return [str(name) for name in self._h5.attrs["feature_names"]]

    @property
    def attrs(self) -> h5py.AttributeManager:
        """The attributes (provenance and the timing of the pass that wrote the cache)."""
        return self._h5.attrs

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (ascending), one read per contiguous run."""
        return read_rows(self.features, rows)


@contextlib.contextmanager
def open_features(path: str | os.PathLike[str]) -> Iterator[FeatureCache]:
    """Open a feature cache for reading.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file has no ``features`` dataset.
    """
    cache_path = existing_file(path, "features_path")
    with h5py.File(cache_path, "r") as h5:
        if FEATURES not in h5:
            raise ValueError(f"{cache_path}: expected a feature cache with dataset {FEATURES!r}")
        yield FeatureCache(h5)


def read_features(path: Path, index: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
    """Read a feature cache.

    Parameters
    ----------
    path : Path
        A file written by ``build_feature_cache``.
    index : np.ndarray of int, shape (M,), optional
        Rows to return, in this order; all rows when None.

    Returns
    -------
    features : np.ndarray, shape (N or M, F), float32
    names : list of str
        Column names.

    Raises
    ------
    TypeError
        ``index`` is not an integer ndarray.
    ValueError
        ``index`` is not one-dimensional or holds a row outside ``0..N-1``.
    """
    if index is not None:
        if not isinstance(index, np.ndarray) or not np.issubdtype(index.dtype, np.integer):
            kind = index.dtype if isinstance(index, np.ndarray) else type(index).__name__
            raise TypeError(f"index: expected an integer numpy.ndarray, got {kind}")
        if index.ndim != 1:
            raise ValueError(f"index: expected one dimension, got shape {index.shape}")
    with open_features(path) as cache:
        features = cache.features[()]
        names = cache.names
    if index is None:
        return features, names
    n_rows = features.shape[0]
    if index.size and (index.min() < 0 or index.max() >= n_rows):
        raise ValueError(f"index: rows {index.min()}..{index.max()} requested, "
                         f"expected 0..{n_rows - 1}")
    return features[index], names


def _compute_slabs(cache: WindowCache, features: h5py.Dataset, slab_windows: int,
                   progress: bool) -> None:
    n_windows = cache.n_windows
    buffer = np.empty((min(slab_windows, n_windows), cache.n_chans, cache.n_times),
                      dtype=np.float32)
    slabs = range(math.ceil(n_windows / slab_windows))
    if progress:
        slabs = progress_bar(slabs, total=len(slabs), desc="features", unit="slab")
    for slab in slabs:
        start = slab * slab_windows
        stop = min(start + slab_windows, n_windows)
        eeg = buffer[: stop - start]
        cache.eeg.read_direct(eeg, np.s_[start:stop], np.s_[0: stop - start])
        features[start:stop] = compute_features(eeg, cache.sfreq_hz, cache.window_start_s)
