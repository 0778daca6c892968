"""Response-time models: a compact CNN on raw windows, and the hybrid CNN + feature MLP.

This module is embedded verbatim into the generated ``submission.py`` (with the feature
spec), so it imports only ``torch`` and the feature spec, and uses no
torch API newer than 2.2 (the scorer's version). Every model maps raw windows
(B, 129, 200) in volts to response times (B, 1) in seconds: the input, feature and
target standardisation fitted on the training split live in buffers, so the state
dict alone reproduces the predictions.
"""

from __future__ import annotations

import torch
from torch import nn

from overnight.features.spec import FEATURE_NAMES, WindowFeatures


class ConvBackbone(nn.Module):
    """Spatial filter bank, then three temporal conv blocks that halve time; flattened.

    Flattening (rather than global pooling) keeps *when* things happen in the window,
    which is what locates the button press and the CPP peak.
    """

    def __init__(self, n_chans: int, n_times: int, n_filters: int, dropout: float,
                 n_embed: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv1d(n_chans, n_filters, kernel_size=1, bias=False),
            nn.BatchNorm1d(n_filters), nn.GELU(),
        ]
        n_out_times = n_times
        for _ in range(3):
            layers += [
                nn.Conv1d(n_filters, n_filters, kernel_size=7, padding=3, bias=False),
                nn.BatchNorm1d(n_filters), nn.GELU(), nn.AvgPool1d(2), nn.Dropout(dropout),
            ]
            n_out_times //= 2
        self.convs = nn.Sequential(*layers)
        self.embed = nn.Sequential(
            nn.Flatten(), nn.Linear(n_filters * n_out_times, n_embed), nn.GELU(),
            nn.Dropout(dropout),
        )
        self.n_embed = n_embed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.convs(x))  # (B, C, T) -> (B, n_embed)


class RTModel(nn.Module):
    """Base class: standardisation buffers and the seconds-in, seconds-out contract."""

    uses_features = False

    def __init__(self, n_chans: int = 129) -> None:
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(n_chans, 1))
        self.register_buffer("input_std", torch.ones(n_chans, 1))
        self.register_buffer("target_mean", torch.zeros(()))
        self.register_buffer("target_std", torch.ones(()))

    def set_standardization(self, stats: dict[str, torch.Tensor]) -> None:
        """Copy standardisation statistics (fitted on the training split) into the buffers."""
        for name, value in stats.items():
            buffer = getattr(self, name)
            buffer.copy_(torch.as_tensor(value, dtype=buffer.dtype).reshape(buffer.shape))

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        """The prediction in target-standardised units (what the loss sees), (B, 1)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Response time in seconds, (B, 1), from windows (B, C, T) in volts."""
        return self.standardized_output(x, features) * self.target_std + self.target_mean

    def _scale_input(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std


class BaselineCNN(RTModel):
    """The CNN alone, on raw windows."""

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3) -> None:
        super().__init__(n_chans)
        self.backbone = ConvBackbone(n_chans, n_times, n_filters, dropout)
        self.head = nn.Linear(self.backbone.n_embed, 1)

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.backbone(self._scale_input(x)))


class HybridCNN(RTModel):
    """The same backbone fused with an MLP on the neuroscience features.

    Training passes the precomputed (Numba) features; at inference the model computes
    them itself from the raw window with the torch twin, so the submission needs
    nothing but the window.
    """

    uses_features = True

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3, sfreq_hz: float = 100.0,
                 window_start_s: float = 0.5, n_feature_hidden: int = 32) -> None:
        super().__init__(n_chans)
        n_features = len(FEATURE_NAMES)
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_std", torch.ones(n_features))
        self.features = WindowFeatures(sfreq_hz, window_start_s)
        self.backbone = ConvBackbone(n_chans, n_times, n_filters, dropout)
        self.feature_mlp = nn.Sequential(
            nn.Linear(n_features, n_feature_hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(n_feature_hidden, n_feature_hidden), nn.GELU(),
        )
        self.head = nn.Linear(self.backbone.n_embed + n_feature_hidden, 1)

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        if features is None:
            features = self.features(x)  # (B, F), the twin of the Numba features
        # Clamped so one extreme window cannot saturate the MLP.
        scaled = ((features - self.feature_mean) / self.feature_std).clamp(-10.0, 10.0)
        fused = torch.cat([self.backbone(self._scale_input(x)), self.feature_mlp(scaled)], dim=1)
        return self.head(fused)


MODELS: dict[str, type[RTModel]] = {"baseline": BaselineCNN, "hybrid": HybridCNN}


def build_model(name: str, **model_args: float) -> RTModel:
    """Instantiate a registered model by name."""
    if name not in MODELS:
        raise ValueError(f"model={name!r}: expected one of {sorted(MODELS)}")
    return MODELS[name](**model_args)
