"""The hybrid: the baseline's CNN fused with the neuroscience features."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from overnight.models.backbones import build_backbone
from overnight.models.base import register
from overnight.models.feature_branch import FeatureBranch, WithFeatures


@register("hybrid", inputs=("eeg", "features"), searched=True)
class HybridCNN(WithFeatures):
    """The CNN backbone fused with the feature branch."""

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3, sfreq_hz: float = 100.0,
                 window_start_s: float = 0.5, n_feature_hidden: int = 32,
                 normalization: str = "train", backbone: str = "conv") -> None:
        super().__init__(n_chans, normalization)
        self.branch = FeatureBranch(sfreq_hz, window_start_s, dropout, n_feature_hidden)
        self.backbone = build_backbone(backbone, n_chans, n_times, n_filters, dropout,
                                       sfreq_hz)
        self.head = nn.Linear(self.backbone.n_embed + self.branch.n_out, 1)

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        return self.standardized_response(x)(features)

    def standardized_response(self, x: torch.Tensor
                              ) -> Callable[[torch.Tensor | None], torch.Tensor]:
        embedding = self.backbone(self.scale_input(x))  # the raw window's part, once
        return lambda features: self.head(torch.cat([embedding, self.branch(x, features)],
                                                    dim=1))
