"""The base class of every model: its inputs and outputs guarded, its loss, its scaling.

Every model maps raw windows (B, 129, 200) in volts to response times (B, 1) in seconds.
The input, feature and target standardisation fitted on the training split live in
buffers, so the state dict alone reproduces the predictions. A model file subclasses
``RTModel``, implements ``standardized_output`` (and, when it learns from another target,
``loss``) and declares itself with ``register`` (``declaration.py``).

Model code is embedded into the generated ``submission.py``: it imports only torch, the
standard library and the project's embeddable modules (names, not modules: ``from
overnight.models.base import RTModel``), and uses no torch API newer than 2.2 (the
scorer's version).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from overnight.models.declaration import Declaration, register

__all__ = ["INPUT_CLIP", "NORMALIZATIONS", "Batch", "ConstantPredictor", "ModelUnavailable",
           "RTModel", "register"]

# How a window is scaled before the network: "train" subtracts the training split's channel
# means and divides by its channel stds; "window" z-scores every channel of every window on
# its own, so the input's scale (volts, microvolts, a subject's gain) cannot move the output;
# "gain" removes each channel's mean over the window (an offset or a drift), divides by the
# training channel stds, then divides the whole window by one number, its RMS: the window's
# overall gain goes, the channels' relative amplitudes and the time course stay.
NORMALIZATIONS = ("train", "window", "gain")
# Scaled inputs are clipped to this many stds: one artefact or a wrongly scaled window
# cannot saturate the network.
INPUT_CLIP = 20.0


class Batch(NamedTuple):
    """One training batch as the model's loss sees it (augmented)."""

    eeg: torch.Tensor  # (B, C, T) volts
    features: torch.Tensor | None  # (B, F), or None: the model computes its own
    target: torch.Tensor  # (B,) RT in training stds from the training mean


class ModelUnavailable(RuntimeError):
    """A model whose library cannot be imported here: the night records it as not run."""


class RTModel(nn.Module):
    """Base class: standardisation buffers and the seconds-in, seconds-out contract.

    Whatever the input, the output is finite and inside ``rt_min``..``rt_max`` (the
    training RTs' central range, fitted with the standardisation): a NaN or Inf sample becomes
    its channel's training mean (no signal), the scaled input is clipped, and the
    prediction is clamped.
    """

    # Set by ``register`` on each model class: its name, inputs, fitting and search family.
    declaration: ClassVar[Declaration]
    # A library the model needs beyond torch (the submission's docstring names it).
    extra_requirement: ClassVar[str | None] = None

    def __init__(self, n_chans: int = 129, normalization: str = "train") -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={normalization!r}: expected one of "
                             f"{NORMALIZATIONS}")
        self.normalization = normalization
        self.register_buffer("input_mean", torch.zeros(n_chans, 1))
        self.register_buffer("input_std", torch.ones(n_chans, 1))
        # 1 for a channel the network reads, 0 for one it must not (the recording reference
        # with ``train.drop_reference``): a zero input is what dropping it means to a
        # first layer that mixes channels linearly.
        self.register_buffer("input_mask", torch.ones(n_chans, 1))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))
        self.register_buffer("rt_min", torch.zeros(()))
        self.register_buffer("rt_max", torch.full((), 10.0))

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this model cannot be built here (an optional library is missing), or None."""
        return None

    @classmethod
    def reads_features(cls) -> bool:
        """Whether training feeds it the precomputed features."""
        return cls.declaration.reads_features

    def set_standardization(self, stats: dict[str, torch.Tensor]) -> None:
        """Copy standardisation statistics (fitted on the training split) into the buffers."""
        for name, value in stats.items():
            buffer = getattr(self, name)
            buffer.copy_(torch.as_tensor(value, dtype=buffer.dtype).reshape(buffer.shape))

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        """The prediction in target-standardised units (what the loss sees), (B, 1)."""
        raise NotImplementedError

    def standardized_response(self, x: torch.Tensor
                              ) -> Callable[[torch.Tensor | None], torch.Tensor]:
        """``standardized_output`` for the windows ``x`` as a function of their features
        alone. A model that reads features overrides it to compute what comes from the raw
        window once: a permutation importance then feeds the same windows many shuffles of
        the features."""
        return functools.partial(self.standardized_output, x)

    def loss(self, batch: Batch) -> torch.Tensor:
        """The training loss of one batch, a scalar: the squared error of the standardised
        prediction. A model that learns from another target overrides this."""
        out = self.standardized_output(batch.eeg, batch.features).squeeze(1)
        return nn.functional.mse_loss(out.float(), batch.target)

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Response time in seconds, (B, 1), from windows (B, C, T) in volts."""
        return self.to_seconds(self.standardized_output(self.neutralize(x), features))

    def own_features(self, x: torch.Tensor) -> torch.Tensor | None:
        """The features this model computes from the windows ``x`` (volts) when it is given
        none, (B, F); None for a model that reads no features."""
        return None

    def feature_response(self, x: torch.Tensor
                         ) -> Callable[[torch.Tensor | None], torch.Tensor]:
        """``forward`` for the windows ``x`` as a function of their features alone
        (``standardized_response``)."""
        respond = self.standardized_response(self.neutralize(x))
        return lambda features: self.to_seconds(respond(features))

    def to_seconds(self, standardized: torch.Tensor) -> torch.Tensor:
        """A standardised prediction in seconds, finite and clamped to the training RTs."""
        rt = standardized * self.target_std + self.target_mean
        rt = torch.where(torch.isfinite(rt), rt, self.target_mean)
        return torch.minimum(torch.maximum(rt, self.rt_min), self.rt_max)

    def neutralize(self, x: torch.Tensor) -> torch.Tensor:
        """Non-finite samples replaced by their channel's training mean."""
        # A NaN or an Inf anywhere makes the sum non-finite: one read of the windows
        # settles the common case, where nothing needs replacing.
        if torch.isfinite(x.sum()):
            return x
        return torch.where(torch.isfinite(x), x, self.input_mean.to(x.dtype))

    def scale_input(self, x: torch.Tensor) -> torch.Tensor:
        """The window as the network should read it: scaled by ``normalization``, clipped
        at ``INPUT_CLIP`` standard deviations, the masked channels zero, (B, C, T)."""
        # Each step after the first writes into the new tensor it made: on a CPU, where
        # compare's passes are bound by memory traffic, every copy of the windows counts.
        # (The windows never need gradients, so nothing here is kept for a backward pass.)
        if self.normalization == "window":
            scaled = x - x.mean(dim=-1, keepdim=True)
            # A flat channel is all zeros once centred, and stays zero.
            scaled.div_(scaled.std(dim=-1, keepdim=True).clamp_min(1e-12))
        elif self.normalization == "gain":
            scaled = (x - x.mean(dim=-1, keepdim=True)).div_(self.input_std)
            scaled.mul_(self.input_mask)
            rms = scaled.square().mean(dim=(-2, -1), keepdim=True).sqrt()
            scaled.div_(rms.clamp_min(1e-12))  # (B, C, T) / (B, 1, 1)
        else:
            scaled = (x - self.input_mean).div_(self.input_std)
        return scaled.clamp_(-INPUT_CLIP, INPUT_CLIP).mul_(self.input_mask.to(scaled.dtype))


class ConstantPredictor(nn.Module):
    """One number for every window, (B, 1): the answer for a challenge not trained for."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.register_buffer("value", torch.tensor(float(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value.expand(x.shape[0], 1).to(x.dtype)
