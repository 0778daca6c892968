"""Per-window EEG features for Challenge 1: the definition, computed in PyTorch.

This file is the feature *spec*: ``overnight.features.kernels`` computes the same numbers
with Numba for the training cache (a parity test holds them together), and this file is
embedded verbatim into the generated ``submission.py``, so it may import only ``functools``,
``math``, ``typing``, ``__future__``, ``torch`` and the project's ``units`` and ``hbn.channels``
(embedded with it; the scorer runs torch 2.2 and nothing else).

A window is (129, T) in volts, channels in ``CH_NAMES`` order (E1..E128, then Cz), starting
``window_start_s`` after the stimulus. Every feature is computed on the average-referenced
signal (each sample minus the mean over all 129 channels), in float64:

- CPP: ``cpp`` = mean of CPz and Pz. ``cpp_mean_v`` is its mean over the window. It is
  smoothed by a centred moving average of ``2 * CPP_SMOOTH_HALF_S * sfreq + 1`` samples
  that shrinks at the edges (each output is the mean of the samples that exist inside the
  span). ``cpp_peak_v`` is the smoothed maximum and ``cpp_peak_latency_s`` its first
  index as stimulus-relative time. ``cpp_slope_v_per_s`` is the least-squares slope of the
  unsmoothed ``cpp`` from the first sample up to and including the peak, over at least
  ``SLOPE_MIN_SPAN_S``.
- ``p3_amp_v``: mean Pz over stimulus-relative ``P3_INTERVAL_S`` (half open, clipped to
  the window).
- Band power: the channel minus its mean, times a periodic Hann window, then the one-sided
  DFT power summed over the bins whose frequency lies in the band (edges included),
  scaled so that a sine of amplitude A gives A**2 / 2 (in V**2). Reported as
  ``log10(power + LOG_EPS_V2)``. Beta and mu use the whole window; the beta time course
  uses ``N_BETA_SEGMENTS`` consecutive segments of ``BETA_SEGMENT_S`` from the window
  start (samples past the last segment are not used). Lateralisation is
  ``(C4 - C3) / (C4 + C3 + LOG_EPS_V2)`` on linear power. Occipital alpha is the mean
  linear power of O1, O2 and Oz.
- Motor: ``C3 - C4`` minus its moving average over ``2 * MOTOR_HIGHPASS_HALF_S * sfreq + 1``
  samples (same edge rule); ``motor_latency_s`` is the stimulus-relative time of its first
  largest absolute value, ``motor_amp_v`` the signed value there.

Seconds become samples through ``overnight.units.to_samples`` (round half up). Features are
finite for any finite input whose squares fit in float64, including flat or all-zero windows.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch

from overnight.hbn.channels import N_CHANS, index_of
from overnight.units import to_samples

# Indices in CH_NAMES of the HydroCel 10-20 equivalents the features read.
CPZ = index_of("CPz")
PZ = index_of("Pz")
C3 = index_of("C3")
C4 = index_of("C4")
O1 = index_of("O1")
O2 = index_of("O2")
OZ = index_of("Oz")

BETA_HZ = (13.0, 30.0)  # motor beta band, Hz, edges included
MU_HZ = (8.0, 12.0)  # mu band over C3/C4 and alpha over O1/O2/Oz, Hz, edges included

CPP_SMOOTH_HALF_S = 0.05  # half width of the CPP moving average, s (0.11 s at 100 Hz)
SLOPE_MIN_SPAN_S = 0.1  # the CPP slope is fitted over at least this span, s
P3_INTERVAL_S = (0.5, 0.8)  # P3 interval after the stimulus, s, half open
BETA_SEGMENT_S = 0.5  # length of one beta time-course segment, s
N_BETA_SEGMENTS = 4  # segments from the window start: 0-0.5, 0.5-1.0, 1.0-1.5, 1.5-2.0 s
MOTOR_HIGHPASS_HALF_S = 0.15  # half width of the moving average removed from C3-C4, s
LOG_EPS_V2 = 1e-30  # added to band powers (V**2) so that flat channels give finite logs

FEATURE_NAMES: tuple[str, ...] = (
    "cpp_mean_v",
    "cpp_peak_v",
    "cpp_peak_latency_s",
    "cpp_slope_v_per_s",
    "p3_amp_v",
    "beta_c3_log10_v2",
    "beta_c4_log10_v2",
    "beta_lat_ratio",
    "mu_c3_log10_v2",
    "mu_c4_log10_v2",
    "mu_lat_ratio",
    "alpha_occ_log10_v2",
    *(f"beta_c3_seg{k}_log10_v2" for k in range(N_BETA_SEGMENTS)),
    *(f"beta_c4_seg{k}_log10_v2" for k in range(N_BETA_SEGMENTS)),
    "motor_latency_s",
    "motor_amp_v",
)


# The features by the physiology they measure (the report's "Do the features help?" asks
# each family in turn); every feature belongs to exactly one.
FEATURE_FAMILIES: dict[str, tuple[str, ...]] = {
    "CPP": ("cpp_mean_v", "cpp_peak_v", "cpp_peak_latency_s", "cpp_slope_v_per_s"),
    "P3": ("p3_amp_v",),
    "beta": ("beta_c3_log10_v2", "beta_c4_log10_v2", "beta_lat_ratio",
             *(f"beta_c{side}_seg{k}_log10_v2" for side in (3, 4)
               for k in range(N_BETA_SEGMENTS))),
    "mu": ("mu_c3_log10_v2", "mu_c4_log10_v2", "mu_lat_ratio"),
    "alpha": ("alpha_occ_log10_v2",),
    "motor": ("motor_latency_s", "motor_amp_v"),
}


class FeatureParams(NamedTuple):
    """Every number both implementations need, resolved for one window geometry.

    Channel indices and the epsilon travel with it so that a compiled (and cached)
    Numba kernel depends on its arguments only.
    """

    n_times: int  # samples per window
    sfreq_hz: float  # sampling rate, Hz
    window_start_s: float  # window start after the stimulus, s
    cpz: int
    pz: int
    c3: int
    c4: int
    o1: int
    o2: int
    oz: int
    cpp_half: int  # CPP moving-average half width, samples
    slope_min_samples: int  # the slope fit ends at max(peak index, this)
    p3_start: int  # first P3 sample in the window
    p3_stop: int  # one past the last P3 sample
    seg_samples: int  # samples per beta segment
    n_segments: int  # beta segments
    motor_half: int  # motor high-pass moving-average half width, samples
    log_eps: float  # LOG_EPS_V2


def feature_params(n_times: int, sfreq_hz: float, window_start_s: float) -> FeatureParams:
    """Resolve the feature definition for windows of ``n_times`` samples.

    Parameters
    ----------
    n_times : int
        Samples per window.
    sfreq_hz : float
        Sampling rate in Hz; above twice the top band edge (``2 * BETA_HZ[1]``).
    window_start_s : float
        Window start after the stimulus, in seconds.

    Returns
    -------
    FeatureParams

    Raises
    ------
    TypeError
        A parameter is not a real number (``n_times``: not an int).
    ValueError
        ``sfreq_hz`` or ``window_start_s`` is not finite, ``sfreq_hz`` puts a band at or
        above Nyquist, or the window is too short for the beta segments or misses the P3
        interval.
    """
    if isinstance(n_times, bool) or not isinstance(n_times, int):
        raise TypeError(f"n_times={n_times!r}: expected an int")
    for name, value in (("sfreq_hz", sfreq_hz), ("window_start_s", window_start_s)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name}={value!r}: expected a real number")
        if not math.isfinite(value):
            raise ValueError(f"{name}={value!r}: expected a finite number")
    min_sfreq_hz = 2.0 * BETA_HZ[1]
    if sfreq_hz <= min_sfreq_hz:
        raise ValueError(f"sfreq_hz={sfreq_hz!r}: expected above {min_sfreq_hz} Hz "
                         f"(twice the top band edge, so every band lies below Nyquist)")
    seg_samples = to_samples(BETA_SEGMENT_S, sfreq_hz)
    if n_times < N_BETA_SEGMENTS * seg_samples:
        raise ValueError(f"n_times={n_times}: expected at least {N_BETA_SEGMENTS * seg_samples} "
                         f"samples ({N_BETA_SEGMENTS} beta segments of {BETA_SEGMENT_S} s "
                         f"at {sfreq_hz} Hz)")
    p3_start = min(max(to_samples(P3_INTERVAL_S[0] - window_start_s, sfreq_hz), 0), n_times)
    p3_stop = min(max(to_samples(P3_INTERVAL_S[1] - window_start_s, sfreq_hz), 0), n_times)
    if p3_stop <= p3_start:
        raise ValueError(f"window_start_s={window_start_s!r} with n_times={n_times}: the window "
                         f"must overlap the P3 interval {P3_INTERVAL_S} s after the stimulus")
    return FeatureParams(
        n_times=n_times, sfreq_hz=float(sfreq_hz), window_start_s=float(window_start_s),
        cpz=CPZ, pz=PZ, c3=C3, c4=C4, o1=O1, o2=O2, oz=OZ,
        cpp_half=to_samples(CPP_SMOOTH_HALF_S, sfreq_hz),
        slope_min_samples=to_samples(SLOPE_MIN_SPAN_S, sfreq_hz),
        p3_start=p3_start, p3_stop=p3_stop,
        seg_samples=seg_samples, n_segments=N_BETA_SEGMENTS,
        motor_half=to_samples(MOTOR_HIGHPASS_HALF_S, sfreq_hz),
        log_eps=LOG_EPS_V2,
    )


def band_basis(n_samples: int, sfreq_hz: float, band_hz: tuple[float, float]) -> list[list[float]]:
    """Rows whose squared dot products with a demeaned signal sum to its band power.

    For each DFT bin ``k`` with ``band_hz[0] <= k * sfreq_hz / n_samples <= band_hz[1]``,
    one row ``s * w[n] * cos(2 pi k n / n_samples)`` and one with ``sin``, where ``w`` is
    the periodic Hann window and ``s = sqrt(2 / (n_samples * sum(w**2)))`` (one-sided
    power in V**2, a sine of amplitude A giving A**2 / 2). Pure Python, so that the Numba
    and the PyTorch implementations use bit-identical bases.

    Parameters
    ----------
    n_samples : int
        Length of the signal the basis is applied to.
    sfreq_hz : float
        Sampling rate, Hz.
    band_hz : tuple of float
        Band edges (low, high) in Hz, both included.

    Returns
    -------
    list of list of float
        ``2 * n_bins`` rows of ``n_samples`` values: the cos rows, then the sin rows.

    Raises
    ------
    ValueError
        The band holds no bin, or reaches Nyquist.
    """
    k_lo = math.ceil(band_hz[0] * n_samples / sfreq_hz - 1e-9)
    k_hi = math.floor(band_hz[1] * n_samples / sfreq_hz + 1e-9)
    if k_hi < k_lo or 2 * k_hi >= n_samples:
        raise ValueError(f"band_hz={band_hz!r}: expected at least one DFT bin below Nyquist "
                         f"for {n_samples} samples at {sfreq_hz} Hz")
    # Angles 2 pi k n / N repeat modulo N: one table, exact periodicity.
    cos_table = [math.cos(2.0 * math.pi * m / n_samples) for m in range(n_samples)]
    sin_table = [math.sin(2.0 * math.pi * m / n_samples) for m in range(n_samples)]
    hann = [0.5 - 0.5 * cos_table[n] for n in range(n_samples)]
    scale = math.sqrt(2.0 / (n_samples * sum(w * w for w in hann)))
    bins = range(k_lo, k_hi + 1)
    cos_rows = [[scale * hann[n] * cos_table[k * n % n_samples] for n in range(n_samples)]
                for k in bins]
    sin_rows = [[scale * hann[n] * sin_table[k * n % n_samples] for n in range(n_samples)]
                for k in bins]
    return cos_rows + sin_rows


def window_features(x: torch.Tensor, sfreq_hz: float, window_start_s: float) -> torch.Tensor:
    """The features of a batch of windows, columns in ``FEATURE_NAMES`` order.

    Parameters
    ----------
    x : torch.Tensor, shape (B, 129, T)
        Windows in volts, any floating dtype, on any device.
    sfreq_hz : float
        Sampling rate, Hz.
    window_start_s : float
        Window start after the stimulus, s.

    Returns
    -------
    torch.Tensor, shape (B, len(FEATURE_NAMES)), float32, on the device of ``x``.

    Raises
    ------
    TypeError
        ``x`` is not a floating-point tensor, or a parameter has the wrong type.
    ValueError
        ``x`` is not (B, 129, T), or see ``feature_params``.
    """
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"x: expected a floating-point torch.Tensor, got {kind}")
    if x.dim() != 3 or x.shape[1] != N_CHANS:
        raise ValueError(f"x: expected shape (B, {N_CHANS}, T), got {tuple(x.shape)}")
    p = feature_params(int(x.shape[2]), sfreq_hz, window_start_s)
    # Only the channels the features read become float64: a float64 copy of the whole
    # window cost more than the features themselves.
    ref = x.mean(dim=1, dtype=torch.float64)  # (B, T) average reference

    def chan(index: int) -> torch.Tensor:
        return x[:, index].to(torch.float64) - ref  # (B, T)

    cpp = 0.5 * (chan(p.cpz) + chan(p.pz))  # (B, T)
    smooth = _moving_average(cpp, p.cpp_half)
    peak_idx = smooth.argmax(dim=1)  # (B,) first maximum
    peak_v = smooth.gather(1, peak_idx[:, None])[:, 0]
    slope = _slope_per_sample(cpp, torch.clamp(peak_idx, min=p.slope_min_samples)) * p.sfreq_hz
    p3 = chan(p.pz)[:, p.p3_start:p.p3_stop].mean(dim=1)

    motor = torch.stack([chan(p.c3), chan(p.c4)], dim=1)  # (B, 2, T)
    occipital = torch.stack([chan(p.o1), chan(p.o2), chan(p.oz)], dim=1)  # (B, 3, T)
    beta = _band_power(motor, _basis(p.n_times, p.sfreq_hz, BETA_HZ, x))  # (B, 2)
    mu_basis = _basis(p.n_times, p.sfreq_hz, MU_HZ, x)
    mu = _band_power(motor, mu_basis)  # (B, 2)
    alpha = _band_power(occipital, mu_basis).mean(dim=1)  # (B,)
    segments = motor[:, :, : p.n_segments * p.seg_samples]
    segments = segments.reshape(x.shape[0], 2, p.n_segments, p.seg_samples)
    beta_seg = _band_power(segments, _basis(p.seg_samples, p.sfreq_hz, BETA_HZ, x))  # (B, 2, S)

    diff = motor[:, 0] - motor[:, 1]
    highpassed = diff - _moving_average(diff, p.motor_half)  # (B, T)
    motor_idx = highpassed.abs().argmax(dim=1)
    motor_amp = highpassed.gather(1, motor_idx[:, None])[:, 0]

    def log_power(power: torch.Tensor) -> torch.Tensor:
        return torch.log10(power + p.log_eps)

    def lateralisation(power: torch.Tensor) -> torch.Tensor:
        return (power[:, 1] - power[:, 0]) / (power[:, 1] + power[:, 0] + p.log_eps)

    columns = [
        cpp.mean(dim=1), peak_v, p.window_start_s + peak_idx.to(torch.float64) / p.sfreq_hz,
        slope, p3,
        log_power(beta[:, 0]), log_power(beta[:, 1]), lateralisation(beta),
        log_power(mu[:, 0]), log_power(mu[:, 1]), lateralisation(mu),
        log_power(alpha),
        *log_power(beta_seg[:, 0]).unbind(dim=1), *log_power(beta_seg[:, 1]).unbind(dim=1),
        p.window_start_s + motor_idx.to(torch.float64) / p.sfreq_hz, motor_amp,
    ]
    return torch.stack(columns, dim=1).to(torch.float32)  # (B, F)


class WindowFeatures(torch.nn.Module):
    """``window_features`` as a parameter-free module, so that a model can own it.

    Parameters
    ----------
    sfreq_hz : float
        Sampling rate of the windows, Hz.
    window_start_s : float
        Window start after the stimulus, s.
    """

    def __init__(self, sfreq_hz: float, window_start_s: float) -> None:
        super().__init__()
        self.sfreq_hz = float(sfreq_hz)
        self.window_start_s = float(window_start_s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 129, T) volts -> (B, len(FEATURE_NAMES)) float32."""
        return window_features(x, self.sfreq_hz, self.window_start_s)

    def extra_repr(self) -> str:
        return f"sfreq_hz={self.sfreq_hz}, window_start_s={self.window_start_s}"


def _basis(n_samples: int, sfreq_hz: float, band_hz: tuple[float, float],
           like: torch.Tensor) -> torch.Tensor:
    return _cpu_basis(n_samples, sfreq_hz, band_hz).to(like.device)  # (2K, n_samples)


@functools.lru_cache(maxsize=16)
def _cpu_basis(n_samples: int, sfreq_hz: float, band_hz: tuple[float, float]) -> torch.Tensor:
    # Built once per geometry: in Python it cost most of a window's features at batch
    # size 1, the scorer's. A plain tensor even when first asked under inference_mode, so
    # that later autograd may read it; nothing writes to it.
    with torch.inference_mode(False):
        return torch.tensor(band_basis(n_samples, sfreq_hz, band_hz), dtype=torch.float64)


def _band_power(y: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Band power of (..., n) signals: (...)."""
    y = y - y.mean(dim=-1, keepdim=True)
    return (y @ basis.T).square().sum(dim=-1)


def _moving_average(y: torch.Tensor, half: int) -> torch.Tensor:
    """Centred moving average of (B, T) over 2 * half + 1 samples, shrinking at the edges."""
    n_times = y.shape[1]
    padded = torch.nn.functional.pad(y, (half, half))  # zeros add nothing to the sums
    sums = padded.unfold(1, 2 * half + 1, 1).sum(dim=2)  # (B, T)
    t = torch.arange(n_times, device=y.device)
    counts = torch.clamp(t + half, max=n_times - 1) - torch.clamp(t - half, min=0) + 1
    return sums / counts.to(torch.float64)


def _slope_per_sample(y: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Least-squares slope of (B, T) over samples 0..last (inclusive, per row), per sample."""
    k = torch.arange(y.shape[1], device=y.device, dtype=torch.float64)  # (T,)
    mask = (k[None, :] <= last[:, None]).to(torch.float64)  # (B, T)
    n = last.to(torch.float64) + 1.0
    y_mean = (y * mask).sum(dim=1) / n
    k_mean = 0.5 * (n - 1.0)
    cross = ((k[None, :] - k_mean[:, None]) * (y - y_mean[:, None]) * mask).sum(dim=1)
    return cross / (n * (n * n - 1.0) / 12.0)  # sum of (k - k_mean)**2 in closed form
