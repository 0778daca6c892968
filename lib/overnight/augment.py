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
"""

from __future__ import annotations

import torch


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
