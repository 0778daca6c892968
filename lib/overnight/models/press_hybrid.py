"""The press locator corrected by the neuroscience features."""

from __future__ import annotations

import torch
from torch import nn

from overnight.models.base import register
from overnight.models.feature_branch import FeatureBranch, WithFeatures
from overnight.models.press import PressLocator


@register("press-hybrid", inputs=("eeg", "features"))
class PressHybrid(WithFeatures, PressLocator):
    """The press locator, corrected by the feature branch (the hybrid idea applied to it):
    the located press time plus a learned correction from the features."""

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3, sfreq_hz: float = 100.0, window_start_s: float = 0.5,
                 n_feature_hidden: int = 32, normalization: str = "window",
                 dense_weight: float = 1.0, press_label_sd_s: float = 0.05) -> None:
        super().__init__(n_chans, n_times, n_filters, dropout, sfreq_hz, window_start_s,
                         normalization, dense_weight, press_label_sd_s)
        self.branch = FeatureBranch(sfreq_hz, window_start_s, dropout, n_feature_hidden)
        self.correction = nn.Linear(self.branch.n_out, 1)
        nn.init.zeros_(self.correction.weight)  # starts as the press locator alone
        nn.init.zeros_(self.correction.bias)

    def corrected(self, located: torch.Tensor, x: torch.Tensor,
                  features: torch.Tensor | None) -> torch.Tensor:
        return located + self.correction(self.branch(x, features))
