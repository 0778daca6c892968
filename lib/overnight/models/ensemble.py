"""Several trained models of one kind shipped as one: their mean."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from overnight.models.base import RTModel


class Ensemble(nn.Module):
    """The mean of several models of one kind (seeds of one training): one module, one
    weights file. Each member guards its own inputs and outputs, so the mean is safe too."""

    def __init__(self, members: list[RTModel]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([member(x, features) for member in self.members]).mean(dim=0)


def build_model_of(model_class: type[RTModel], ensemble: int = 1, **model_args: Any
                   ) -> nn.Module:
    """``model_class(**model_args)``; with ``ensemble`` > 1, that many of them, averaged."""
    if ensemble > 1:
        return Ensemble([model_class(**model_args) for _ in range(ensemble)])
    return model_class(**model_args)
