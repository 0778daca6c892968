"""The neuroscience features as a model's second input: the branch that reads them, and
the mixin a model with such a branch inherits."""

from __future__ import annotations

import torch
from torch import nn

from overnight.features.spec import FEATURE_NAMES, WindowFeatures
from overnight.models.base import RTModel


class FeatureBranch(nn.Module):
    """The neuroscience features of a window, standardised and through a small MLP.

    Training passes the precomputed (Numba) features; at inference the branch computes them
    itself from the raw window with the torch twin, so the submission needs nothing but the
    window.
    """

    def __init__(self, sfreq_hz: float, window_start_s: float, dropout: float,
                 n_hidden: int = 32) -> None:
        super().__init__()
        n_features = len(FEATURE_NAMES)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.features = WindowFeatures(sfreq_hz, window_start_s)
        self.mlp = nn.Sequential(
            nn.Linear(n_features, n_hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(n_hidden, n_hidden), nn.GELU(),
        )
        self.n_out = n_hidden

    def forward(self, x: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        if features is None:
            features = self.features(x)  # (B, F), the twin of the Numba features
        # Clamped so one extreme window cannot saturate the MLP.
        scaled = torch.nan_to_num((features - self.feature_mean) / self.feature_std,
                                  nan=0.0).clamp(-10.0, 10.0)
        return self.mlp(scaled)


class WithFeatures(RTModel):
    """A model with a ``FeatureBranch`` as ``self.branch``: the training split's feature
    statistics (``feature_mean``, ``feature_std``) go into the branch's buffers."""

    branch: FeatureBranch

    def own_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.branch.features(self.neutralize(x))

    @property
    def feature_mean(self) -> torch.Tensor:
        return self.branch.feature_mean

    @property
    def feature_std(self) -> torch.Tensor:
        return self.branch.feature_std
