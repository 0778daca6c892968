"""Several trained models shipped as one: the mean of one kind's seeds, and the weighted
blend of the night's models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from overnight.models.base import RTModel


class Ensemble(nn.Module):
    """The mean of several models of one kind (seeds of one training): one module, one
    weights file. Each member guards its own inputs and outputs, so the mean is safe too.
    Members that read features share the ones the first computes from the window: seeds of
    one training compute the same."""

    def __init__(self, members: list[RTModel]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        features = self._features(x, features)
        return torch.stack([member(x, features) for member in self.members]).mean(dim=0)

    def feature_response(self, x: torch.Tensor
                         ) -> Callable[[torch.Tensor | None], torch.Tensor]:
        """``forward`` for the windows ``x`` as a function of their features alone."""
        responses = [member.feature_response(x) for member in self.members]
        own: list[torch.Tensor | None] = []  # the window's own features, once asked for

        def respond_all(features: torch.Tensor | None) -> torch.Tensor:
            if features is None:
                if not own:
                    own.append(self._features(x, None))
                features = own[0]
            return torch.stack([respond(features) for respond in responses]).mean(dim=0)

        return respond_all

    def _features(self, x: torch.Tensor, features: torch.Tensor | None
                  ) -> torch.Tensor | None:
        return features if features is not None else self.members[0].own_features(x)


class Blend(nn.Module):
    """The night's models, each with a non-negative weight, the weights summing to one (the
    blend compare fits on the tune subjects). Every member guards its own output, and a
    convex combination of RTs in the training range stays in it."""

    def __init__(self, members: list[nn.Module], weights: list[float]) -> None:
        super().__init__()
        if len(members) != len(weights):
            raise ValueError(f"{len(members)} members but {len(weights)} weights")
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self._weighted([member(x, features) for member in self.members])

    def feature_response(self, x: torch.Tensor
                         ) -> Callable[[torch.Tensor | None], torch.Tensor]:
        """``forward`` for the windows ``x`` as a function of their features alone."""
        responses = [member.feature_response(x) for member in self.members]
        return lambda features: self._weighted([respond(features) for respond in responses])

    def _weighted(self, outputs: list[torch.Tensor]) -> torch.Tensor:
        stacked = torch.stack(outputs)  # (M, B, 1)
        return (stacked * self.weights[:, None, None].to(stacked.dtype)).sum(dim=0)


def build_blend_of(members: list[tuple[type[RTModel], dict[str, Any]]],
                   weights: list[float]) -> Blend:
    """The blend of ``(model class, its arguments)`` pairs (``build_model_of`` each)."""
    return Blend([build_model_of(cls, **args) for cls, args in members], weights)


def build_model_of(model_class: type[RTModel], ensemble: int = 1, **model_args: Any
                   ) -> nn.Module:
    """``model_class(**model_args)``; with ``ensemble`` > 1, that many of them, averaged."""
    if ensemble > 1:
        return Ensemble([model_class(**model_args) for _ in range(ensemble)])
    return model_class(**model_args)
