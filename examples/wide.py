"""A model of your own: a wide CNN that reads the window's mean and peak activity."""

import torch
from torch import nn

from overnight.models.base import RTModel, register


@register("wide", inputs=("eeg",), searched=True)
class WideNet(RTModel):
    def __init__(self, n_chans: int = 129, n_filters: int = 32, dropout: float = 0.3,
                 normalization: str = "train") -> None:
        super().__init__(n_chans, normalization)  # the guards and the scaling
        width = 2 * n_filters
        self.net = nn.Sequential(
            nn.Conv1d(n_chans, width, kernel_size=9, padding=4), nn.GELU(), nn.Dropout(dropout),
            nn.Conv1d(width, width, kernel_size=9, padding=4), nn.GELU())
        self.head = nn.Linear(2 * width, 1)

    def standardized_output(self, x: torch.Tensor, features: torch.Tensor | None = None):
        h = self.net(self.scale_input(x))  # (B, 2F, T)
        return self.head(torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1))  # (B, 1)
