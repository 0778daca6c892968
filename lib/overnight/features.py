"""Per-window features with Numba, and the feature-cache stage.

The definition lives in ``overnight.feature_twin`` (which the submitted model runs in
PyTorch); this module computes the same numbers for the training cache. Kernels are
private, do no validation and accumulate in float64; ``compute_features`` checks inputs.

The cache is an HDF5 file with dataset ``features`` (N, F) float32 and attributes
``feature_names``, ``sfreq_hz``, ``window_start_s``, ``n_windows``, ``source``,
``source_created``, ``config``, ``code_version``, ``created``, ``compile_s``, ``compute_s``
and ``windows_per_s``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numba
import numpy as np

from overnight.atomic import atomic_path
from overnight.cli import progress as progress_bar
from overnight.config import FeaturesConfig
from overnight.feature_twin import (
    BETA_HZ,
    FEATURE_NAMES,
    MU_HZ,
    N_CHANS,
    FeatureParams,
    band_basis,
    feature_params,
)
from overnight.provenance import code_version

log = logging.getLogger(__name__)


def compute_features(eeg: np.ndarray, sfreq_hz: float, window_start_s: float) -> np.ndarray:
    """The features of a batch of windows, columns in ``FEATURE_NAMES`` order.

    Parameters
    ----------
    eeg : np.ndarray, shape (N, 129, T), float32
        Windows in volts.
    sfreq_hz : float
        Sampling rate, Hz (above twice the top band edge).
    window_start_s : float
        Window start after the stimulus, s.

    Returns
    -------
    np.ndarray, shape (N, len(FEATURE_NAMES)), float32

    Raises
    ------
    TypeError
        ``eeg`` is not a float32 ndarray, or a parameter is not a real number.
    ValueError
        ``eeg`` is not (N, 129, T), a parameter is not finite, or the window geometry does
        not fit the definition (see ``overnight.feature_twin.feature_params``).
    """
    if not isinstance(eeg, np.ndarray):
        raise TypeError(f"eeg: expected a numpy.ndarray, got {type(eeg).__name__}")
    if eeg.dtype != np.float32:
        raise TypeError(f"eeg: expected dtype float32, got {eeg.dtype}")
    if eeg.ndim != 3 or eeg.shape[1] != N_CHANS:
        raise ValueError(f"eeg: expected shape (N, {N_CHANS}, T), got {eeg.shape}")
    params = feature_params(int(eeg.shape[2]), sfreq_hz, window_start_s)
    out = np.empty((eeg.shape[0], len(FEATURE_NAMES)), dtype=np.float64)
    _features_kernel(np.ascontiguousarray(eeg), params,
                     _basis(params.n_times, params.sfreq_hz, BETA_HZ),
                     _basis(params.n_times, params.sfreq_hz, MU_HZ),
                     _basis(params.seg_samples, params.sfreq_hz, BETA_HZ), out)
    return out.astype(np.float32)


def build_feature_cache(windows_path: Path, out_path: Path, cfg: FeaturesConfig,
                        progress: bool = True) -> dict[str, Any]:
    """Compute the features of every window in a window cache and write them atomically.

    Reads dataset ``eeg`` (N, 129, T) float32 in slabs of ``cfg.slab_windows`` windows
    (one contiguous read per slab into a reused buffer). The Numba compile time is measured
    on one window before the timed pass; ``compute_s`` is the pass itself (reading,
    computing and writing).

    Parameters
    ----------
    windows_path : Path
        The window cache (HDF5 with dataset ``eeg`` and attributes ``sfreq_hz``,
        ``window_start_s``, ``created``).
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
        ``cfg`` is not a FeaturesConfig, or ``eeg`` is not float32.
    ValueError
        ``cfg.slab_windows`` is below 1, or the window cache lacks ``eeg`` or an attribute,
        or has the wrong shape.
    """
    if not isinstance(cfg, FeaturesConfig):
        raise TypeError(f"cfg: expected a FeaturesConfig, got {type(cfg).__name__}")
    if cfg.slab_windows < 1:
        raise ValueError(f"cfg.slab_windows={cfg.slab_windows}: expected at least 1")
    windows_path = Path(windows_path).resolve()
    with h5py.File(windows_path, "r") as src:
        dset, meta = _open_windows(src, windows_path)
        n_windows, _, n_times = dset.shape

        start = time.perf_counter()
        compute_features(np.zeros((1, N_CHANS, n_times), np.float32), meta["sfreq_hz"],
                         meta["window_start_s"])
        compile_s = time.perf_counter() - start
        log.info("features: Numba kernel ready in %.2f s (compile or cache load)", compile_s)

        with atomic_path(out_path, suffix=".h5") as tmp, h5py.File(tmp, "w") as dst:
            features = dst.create_dataset("features", shape=(n_windows, len(FEATURE_NAMES)),
                                          dtype=np.float32)
            start = time.perf_counter()
            _compute_slabs(dset, features, meta, cfg.slab_windows, progress)
            compute_s = time.perf_counter() - start
            windows_per_s = n_windows / compute_s if compute_s > 0 else 0.0
            dst.attrs.update({
                "feature_names": list(FEATURE_NAMES),
                "sfreq_hz": meta["sfreq_hz"],
                "window_start_s": meta["window_start_s"],
                "n_windows": n_windows,
                "source": str(windows_path),
                "source_created": meta["created"],
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
    with h5py.File(path, "r") as fh:
        features = fh["features"][()]
        names = [str(name) for name in fh.attrs["feature_names"]]
    if index is None:
        return features, names
    n_rows = features.shape[0]
    if index.size and (index.min() < 0 or index.max() >= n_rows):
        raise ValueError(f"index: rows {index.min()}..{index.max()} requested, "
                         f"expected 0..{n_rows - 1}")
    return features[index], names


def _open_windows(src: h5py.File, path: Path) -> tuple[h5py.Dataset, dict[str, Any]]:
    """The ``eeg`` dataset and the attributes the stage needs, checked."""
    if "eeg" not in src:
        raise ValueError(f"{path}: expected a dataset 'eeg' (a window cache)")
    dset = src["eeg"]
    if dset.ndim != 3 or dset.shape[1] != N_CHANS:
        raise ValueError(f"{path}: eeg has shape {dset.shape}, expected (N, {N_CHANS}, T)")
    if dset.dtype != np.float32:
        raise TypeError(f"{path}: eeg has dtype {dset.dtype}, expected float32")
    missing = [key for key in ("sfreq_hz", "window_start_s", "created") if key not in src.attrs]
    if missing:
        raise ValueError(f"{path}: missing attribute(s) {missing} of a window cache")
    meta = {"sfreq_hz": float(src.attrs["sfreq_hz"]),
            "window_start_s": float(src.attrs["window_start_s"]),
            "created": src.attrs["created"]}
    return dset, meta


def _compute_slabs(dset: h5py.Dataset, features: h5py.Dataset, meta: dict[str, Any],
                   slab_windows: int, progress: bool) -> None:
    n_windows, n_chans, n_times = dset.shape
    buffer = np.empty((min(slab_windows, n_windows), n_chans, n_times), dtype=np.float32)
    slabs = range(math.ceil(n_windows / slab_windows))
    if progress:
        slabs = progress_bar(slabs, total=len(slabs), desc="features", unit="slab")
    for slab in slabs:
        start = slab * slab_windows
        stop = min(start + slab_windows, n_windows)
        eeg = buffer[: stop - start]
        dset.read_direct(eeg, np.s_[start:stop], np.s_[0: stop - start])
        features[start:stop] = compute_features(eeg, meta["sfreq_hz"], meta["window_start_s"])


def _basis(n_samples: int, sfreq_hz: float, band_hz: tuple[float, float]) -> np.ndarray:
    """The band's DFT basis, transposed to (samples, rows) for ``_band_power``."""
    return np.ascontiguousarray(
        np.asarray(band_basis(n_samples, sfreq_hz, band_hz), dtype=np.float64).T)


@numba.njit(parallel=True, cache=True)
def _features_kernel(eeg, p: FeatureParams, beta_basis, mu_basis, seg_basis, out):
    """Fill ``out`` (N, F) float64 from ``eeg`` (N, 129, T) float32, one window per thread."""
    for w in numba.prange(eeg.shape[0]):
        _window_features(eeg[w], p, beta_basis, mu_basis, seg_basis, out[w])


@numba.njit(cache=True)
def _window_features(x, p, beta_basis, mu_basis, seg_basis, out):
    """Fill ``out`` (F,) from one window ``x`` (129, T), in FEATURE_NAMES order."""
    n_chans, n_times = x.shape
    ref = np.zeros(n_times)  # average reference
    for c in range(n_chans):
        for t in range(n_times):
            ref[t] += x[c, t]
    ref /= n_chans
    cpz = _referenced(x, p.cpz, ref)
    pz = _referenced(x, p.pz, ref)
    c3 = _referenced(x, p.c3, ref)
    c4 = _referenced(x, p.c4, ref)

    cpp = 0.5 * (cpz + pz)
    smooth = _moving_average(cpp, p.cpp_half)
    peak_idx = _first_argmax(smooth)
    out[0] = cpp.mean()
    out[1] = smooth[peak_idx]
    out[2] = p.window_start_s + peak_idx / p.sfreq_hz
    out[3] = _slope_per_sample(cpp, max(peak_idx, p.slope_min_samples)) * p.sfreq_hz
    out[4] = pz[p.p3_start:p.p3_stop].mean()

    beta_c3 = _band_power(c3, beta_basis)
    beta_c4 = _band_power(c4, beta_basis)
    mu_c3 = _band_power(c3, mu_basis)
    mu_c4 = _band_power(c4, mu_basis)
    alpha = (_band_power(_referenced(x, p.o1, ref), mu_basis)
             + _band_power(_referenced(x, p.o2, ref), mu_basis)
             + _band_power(_referenced(x, p.oz, ref), mu_basis)) / 3.0
    out[5] = np.log10(beta_c3 + p.log_eps)
    out[6] = np.log10(beta_c4 + p.log_eps)
    out[7] = (beta_c4 - beta_c3) / (beta_c4 + beta_c3 + p.log_eps)
    out[8] = np.log10(mu_c3 + p.log_eps)
    out[9] = np.log10(mu_c4 + p.log_eps)
    out[10] = (mu_c4 - mu_c3) / (mu_c4 + mu_c3 + p.log_eps)
    out[11] = np.log10(alpha + p.log_eps)
    for s in range(p.n_segments):
        lo = s * p.seg_samples
        hi = lo + p.seg_samples
        out[12 + s] = np.log10(_band_power(c3[lo:hi], seg_basis) + p.log_eps)
        out[12 + p.n_segments + s] = np.log10(_band_power(c4[lo:hi], seg_basis) + p.log_eps)

    diff = c3 - c4
    highpassed = diff - _moving_average(diff, p.motor_half)
    motor_idx = _first_argmax(np.abs(highpassed))
    out[12 + 2 * p.n_segments] = p.window_start_s + motor_idx / p.sfreq_hz
    out[13 + 2 * p.n_segments] = highpassed[motor_idx]


@numba.njit(cache=True)
def _referenced(x, c, ref):
    """Channel ``c`` of window ``x`` minus the average reference, float64."""
    return x[c].astype(np.float64) - ref


@numba.njit(cache=True)
def _moving_average(y, half):
    """Centred mean over 2 * half + 1 samples, over the samples that exist at the edges."""
    n = y.shape[0]
    out = np.empty(n)
    for t in range(n):
        lo = max(t - half, 0)
        hi = min(t + half, n - 1)
        total = 0.0
        for i in range(lo, hi + 1):
            total += y[i]
        out[t] = total / (hi - lo + 1)
    return out


@numba.njit(cache=True)
def _first_argmax(y):
    best = 0
    for i in range(1, y.shape[0]):
        if y[i] > y[best]:
            best = i
    return best


@numba.njit(cache=True)
def _slope_per_sample(y, last):
    """Least-squares slope of y[0..last] (inclusive) per sample."""
    n = last + 1
    y_mean = y[:n].mean()
    k_mean = 0.5 * (n - 1.0)
    cross = 0.0
    for k in range(n):
        cross += (k - k_mean) * (y[k] - y_mean)
    return cross / (n * (n * n - 1.0) / 12.0)


@numba.njit(cache=True)
def _band_power(y, basis_t):
    """Sum over basis rows of (row . (y - mean(y)))**2: band power in V**2.

    ``basis_t`` is the basis transposed, (samples, rows): the inner loop then updates one
    independent dot product per row, which vectorises without reordering any sum.
    """
    centred = y - y.mean()
    dots = np.zeros(basis_t.shape[1])
    for t in range(centred.shape[0]):
        value = centred[t]
        for r in range(basis_t.shape[1]):
            dots[r] += basis_t[t, r] * value
    power = 0.0
    for r in range(dots.shape[0]):
        power += dots[r] * dots[r]
    return power
