"""Augmentation of training batches: what a model sees of a window during training only.

Each function takes a batch on its device and returns a new one; randomness comes from
torch's global generator, which training seeds per epoch (so a resumed run draws the same).
The tune side, compare and the submission never pass through here: they read the plain,
official window.

- ``shifted_crops``: each window cut from its margin up to ``max_shift`` samples earlier or
  later, the target moved by the same time (RT - shift): the press then appears at many
  places in the window, and the target still says where.
- ``scale``: each window (a subject's gain) and each channel (an electrode's) times a
  log-normal factor.
- ``drop_channels``: channels replaced by their training mean, as a dead electrode.
- ``add_noise``: Gaussian noise in units of each channel's training std.
- ``mixup``: each window and its target mixed with another window of the batch.
- ``rotate_sensors``: the net as if it sat rotated on the head (Krell & Kim 2017, braindecode's
  ``SensorsRotation``): each window's field re-read at rotated electrode positions by
  spherical-spline interpolation (Perrin et al. 1989), from a bank made by
  ``rotation_bank``. Caps sit differently on every head, so the scalp map of the same
  process moves between subjects.

``Augmentation`` applies the ones ``[train]`` turns on to each training batch, in this order.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from numpy.polynomial import legendre

from overnight.config import TrainConfig
from overnight.hbn.channels import positions_m
from overnight.models.base import Batch, RTModel
from overnight.units import to_samples

# Perrin et al. (1989)'s spline: stiffness m = 4, its Legendre series cut after 50 terms
# (as MNE's interpolation of bad channels).
SPLINE_STIFFNESS = 4
SPLINE_TERMS = 50
# sensor rotations drawn once per training (train.sensor_rotation_deg), each batch window
# taking one at random: 4 MB of matrices
ROTATIONS_IN_BANK = 64


def shifted_crops(x: torch.Tensor, n_times: int, margin: int,
                  max_shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows of ``n_times`` cut from ``x`` (B, C, margin + n_times + margin) at
    ``margin + shift``, the shift uniform in ``-max_shift..max_shift`` samples per window.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The crops (B, C, n_times) and each window's shift in samples (B,), positive when
        the crop starts later than the official window.

    Raises
    ------
    ValueError
        ``max_shift`` exceeds ``margin`` or ``x`` is not that wide.
    """
    if not 0 <= max_shift <= margin:
        raise ValueError(f"max_shift={max_shift}: expected 0..{margin} (the margin)")
    if x.shape[-1] != n_times + 2 * margin:
        raise ValueError(f"x has {x.shape[-1]} samples; expected {n_times} + 2 x {margin}")
    shift = torch.randint(-max_shift, max_shift + 1, (x.shape[0],), device=x.device)
    index = (margin + shift)[:, None] + torch.arange(n_times, device=x.device)  # (B, T)
    return torch.gather(x, 2, index[:, None, :].expand(-1, x.shape[1], -1)), shift


def scale(x: torch.Tensor, window_sd: float, channel_sd: float) -> torch.Tensor:
    """``x`` (B, C, T) times exp(N(0, window_sd)) per window and exp(N(0, channel_sd)) per
    channel of each window."""
    log_gain = torch.zeros(x.shape[0], x.shape[1], 1, device=x.device)
    if window_sd:
        log_gain += window_sd * torch.randn(x.shape[0], 1, 1, device=x.device)
    if channel_sd:
        log_gain += channel_sd * torch.randn(x.shape[0], x.shape[1], 1, device=x.device)
    return x * log_gain.exp().to(x.dtype)


def drop_channels(x: torch.Tensor, probability: float, fill: torch.Tensor) -> torch.Tensor:
    """Each channel of each window of ``x`` (B, C, T) replaced by ``fill`` (C, 1), its
    training mean, with ``probability``."""
    dropped = torch.rand(x.shape[0], x.shape[1], 1, device=x.device) < probability
    return torch.where(dropped, fill.to(x.dtype), x)


def add_noise(x: torch.Tensor, sd: float, channel_std: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, T) plus Gaussian noise of ``sd`` times each channel's ``channel_std``
    (C, 1)."""
    return x + torch.randn_like(x) * (sd * channel_std).to(x.dtype)


def mixup(x: torch.Tensor, features: torch.Tensor | None, y: torch.Tensor, alpha: float
          ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Each window, its features and its target mixed with those of another window of the
    batch (a random pairing), with weight lambda ~ Beta(alpha, alpha) per window."""
    weight = torch.distributions.Beta(alpha, alpha).sample((x.shape[0],)).to(x.device)
    partner = torch.randperm(x.shape[0], device=x.device)

    def mix(values: torch.Tensor) -> torch.Tensor:
        w = weight.reshape(-1, *([1] * (values.dim() - 1))).to(values.dtype)
        return w * values + (1.0 - w) * values[partner]

    return mix(x), None if features is None else mix(features), mix(y)


def rotate_sensors(x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, T) with each window's channels mixed by a matrix of ``bank`` (K, C, C)
    drawn at random: the field the window shows, read where a rotated net would sit.

    Raises
    ------
    ValueError
        ``x`` has another number of channels than the net ``bank`` was made for.
    """
    if x.shape[1] != bank.shape[1]:
        raise ValueError(f"sensor rotation reads the {bank.shape[1]} electrodes of the net; "
                         f"these windows have {x.shape[1]} channels (train.sensor_rotation_deg "
                         "= 0 turns it off)")
    pick = torch.randint(0, bank.shape[0], (x.shape[0],), device=x.device)
    return torch.bmm(bank[pick].to(x.dtype), x)


def rotation_bank(positions: np.ndarray, max_degrees: float, n_rotations: int,
                  generator: np.random.Generator) -> torch.Tensor:
    """(n_rotations, C, C) float32 matrices: each interpolates a field known at
    ``positions`` (C, 3) onto those positions rotated about the head's centre, about an
    axis uniform on the sphere, by an angle uniform in +-``max_degrees``."""
    unit = on_unit_sphere(positions)
    rotated = np.stack([
        unit @ rotation_matrix(generator.standard_normal(3),
                               np.deg2rad(generator.uniform(-max_degrees, max_degrees))).T
        for _ in range(n_rotations)])
    return torch.as_tensor(spline_interpolation(unit, rotated), dtype=torch.float32)


def on_unit_sphere(positions: np.ndarray) -> np.ndarray:
    """``positions`` (N, 3) as unit vectors from the centre of the sphere that fits them
    best (least squares: |p - c|^2 = r^2 is linear in c and r^2 - |c|^2)."""
    design = np.hstack([2.0 * positions, np.ones((len(positions), 1))])
    solution, *_ = np.linalg.lstsq(design, (positions**2).sum(axis=1), rcond=None)
    return _unit(positions - solution[:3])


def spline_interpolation(known: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(..., M, N): the spherical spline through values at the ``known`` (N, 3) unit
    vectors, read at the ``at`` (..., M, 3) unit vectors (one matrix per set of them)."""
    return _spline_basis(at, known) @ _spline_solver(known)


def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' formula: the rotation by ``angle`` radians about ``axis``."""
    axis = _unit(axis)
    cross = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]],
                      [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * cross @ cross


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def _spline_kernel(cosines: np.ndarray) -> np.ndarray:
    """Perrin's g(cos angle) = 1/(4 pi) sum_n (2n + 1) / (n (n + 1))^m P_n(cos angle),
    read off a fine table of it (g is smooth: linear interpolation is exact to 1e-9)."""
    grid, table = _spline_table()
    return np.interp(np.clip(cosines, -1.0, 1.0), grid, table)


@functools.lru_cache(maxsize=1)
def _spline_table() -> tuple[np.ndarray, np.ndarray]:
    n = np.arange(1, SPLINE_TERMS + 1)
    coefficients = np.concatenate([[0.0], (2 * n + 1) / (n * (n + 1)) ** SPLINE_STIFFNESS])
    grid = np.linspace(-1.0, 1.0, 20_001)
    return grid, legendre.legval(grid, coefficients) / (4.0 * np.pi)


def _spline_basis(at: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(..., M, N + 1): the kernel between the unit vectors ``at`` (..., M, 3) and
    ``known`` (N, 3), and the constant term."""
    kernel = _spline_kernel(at @ known.T)
    return np.concatenate([kernel, np.ones((*kernel.shape[:-1], 1))], axis=-1)


def _spline_solver(known: np.ndarray) -> np.ndarray:
    """(C + 1, C): the spline's weights and constant from the values at ``known`` (C, 3)
    unit vectors, with the weights summing to zero."""
    system = np.vstack([_spline_basis(known, known), np.append(np.ones(len(known)), 0.0)])
    return np.linalg.pinv(system)[:, :-1]


class Augmentation:
    """The training batch as the model sees it: ``cfg``'s augmentations, in the order of
    this module's list (crops first: the others act on what the model sees)."""

    def __init__(self, cfg: TrainConfig, margin: int, sfreq_hz: float) -> None:
        self.cfg, self.margin, self.sfreq_hz = cfg, margin, sfreq_hz
        self.max_shift = to_samples(cfg.crop_shift_s, sfreq_hz)
        self.rotations = (rotation_bank(positions_m(), cfg.sensor_rotation_deg,
                                        ROTATIONS_IN_BANK, np.random.default_rng(cfg.seed))
                          if cfg.sensor_rotation_deg else None)

    def __call__(self, model: RTModel, batch: Batch) -> Batch:
        cfg = self.cfg
        x, features, y = batch
        if self.margin:
            x, shift = shifted_crops(x, x.shape[-1] - 2 * self.margin, self.margin,
                                     self.max_shift)
            y = y - shift.to(y.dtype) / (self.sfreq_hz * model.target_std)  # RT - shift
            # The cached features are the official window's; a model that reads features
            # computes the crop's itself (the same code the submission runs).
            features = None
        if self.rotations is not None:
            self.rotations = self.rotations.to(x.device)
            x = rotate_sensors(x, self.rotations)
        if cfg.scale_sd or cfg.channel_scale_sd:
            x = scale(x, cfg.scale_sd, cfg.channel_scale_sd)
        if cfg.channel_dropout:
            x = drop_channels(x, cfg.channel_dropout, model.input_mean)
        if cfg.noise_sd:
            x = add_noise(x, cfg.noise_sd, model.input_std)
        if cfg.mixup_alpha:
            x, features, y = mixup(x, features, y, cfg.mixup_alpha)
        return Batch(x, features, y)
