"""The features of ``overnight.features.spec``, computed with Numba for the training cache.

Kernels are private, do no validation and accumulate in float64; ``compute_features``
checks its inputs. A parity test holds these numbers to the spec's PyTorch implementation.
"""

from __future__ import annotations

import numba
import numpy as np

from overnight.features.spec import (
    BETA_HZ,
    FEATURE_NAMES,
    MU_HZ,
    N_CHANS,
    band_basis,
    feature_params,
)


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
        not fit the definition (see ``overnight.features.spec.feature_params``).
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


def _basis(n_samples: int, sfreq_hz: float, band_hz: tuple[float, float]) -> np.ndarray:
    """The band's DFT basis, transposed to (samples, rows) for ``_band_power``."""
    return np.ascontiguousarray(
        np.asarray(band_basis(n_samples, sfreq_hz, band_hz), dtype=np.float64).T)


@numba.njit(parallel=True, cache=True)
def _features_kernel(eeg, p, beta_basis, mu_basis, seg_basis, out):
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
