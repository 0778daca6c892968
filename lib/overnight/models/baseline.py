"""The baseline: a compact CNN on the raw window."""

from __future__ import annotations

import torch
from torch import nn

from overnight.models.backbones import build_backbone
from overnight.models.base import RTModel, register


@register("baseline", inputs=("eeg",), searched=True)
class BaselineCNN(RTModel):
    """The CNN alone, on raw windows."""

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3, normalization: str = "train", backbone: str = "conv",
                 sfreq_hz: float = 100.0) -> None:
        super().__init__(n_chans, normalization)
        self.backbone = build_backbone(backbone, n_chans, n_times, n_filters, dropout,
                                       sfreq_hz)
        self.head = nn.Linear(self.backbone.n_embed, 1)

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.backbone(self.scale_input(x)))
