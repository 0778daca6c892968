"""The raw-window networks models are built on: a convolutional filter bank (``conv``),
EEGNet's layout (``eegnet``), and the press locator's dilated temporal network, which keeps
one output per time step."""

from __future__ import annotations

import torch
from torch import nn

# Dilations of the press locator's temporal convolutions (kernel 5): each step sees 61
# steps, +-0.3 s at 100 Hz, enough to tell a press from the CPP ramp before it.
PRESS_DILATIONS = (1, 2, 4, 8)


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


class EEGNetBackbone(nn.Module):
    """EEGNet's layout (Lawhern et al. 2018, J Neural Eng 15:056013), a network built to
    carry over to new subjects with few weights: temporal filters, then per filter a few
    spatial filters over the whole net (depthwise: ``depth`` x ``n_temporal`` x 129 weights
    in all), pooling, a separable temporal convolution, pooling; flattened, so that when
    things happen is kept, as in ``ConvBackbone``.
    """

    def __init__(self, n_chans: int, n_times: int, n_filters: int, dropout: float,
                 sfreq_hz: float = 100.0, depth: int = 2) -> None:
        super().__init__()
        n_temporal = max(1, n_filters // depth)
        kernel = 2 * int(0.125 * sfreq_hz) + 1  # 0.25 s: down to 4 Hz
        self.convs = nn.Sequential(
            nn.Conv2d(1, n_temporal, (1, kernel), padding=(0, kernel // 2), bias=False),
            nn.BatchNorm2d(n_temporal),
            nn.Conv2d(n_temporal, n_temporal * depth, (n_chans, 1), groups=n_temporal,
                      bias=False),  # (B, F*D, 1, T)
            nn.BatchNorm2d(n_temporal * depth), nn.ELU(), nn.AvgPool2d((1, 4)),
            nn.Dropout(dropout),
            nn.Conv2d(n_temporal * depth, n_temporal * depth, (1, 15), padding=(0, 7),
                      groups=n_temporal * depth, bias=False),
            nn.Conv2d(n_temporal * depth, n_filters, 1, bias=False),
            nn.BatchNorm2d(n_filters), nn.ELU(), nn.AvgPool2d((1, 2)), nn.Dropout(dropout),
            nn.Flatten())
        self.n_embed = n_filters * (n_times // 4 // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x.unsqueeze(1))  # (B, C, T) -> (B, n_embed)


# The raw-window networks a model can be built on (``backbone``).
BACKBONES = {"conv": ConvBackbone, "eegnet": EEGNetBackbone}


def build_backbone(name: str, n_chans: int, n_times: int, n_filters: int, dropout: float,
                   sfreq_hz: float) -> nn.Module:
    """A registered backbone by name (EEGNet's filters follow the rate)."""
    if name not in BACKBONES:
        raise ValueError(f"backbone={name!r}: expected one of {sorted(BACKBONES)}")
    if name == "eegnet":
        return EEGNetBackbone(n_chans, n_times, n_filters, dropout, sfreq_hz)
    return ConvBackbone(n_chans, n_times, n_filters, dropout)


def dilated_temporal(n_chans: int, n_filters: int, dropout: float) -> nn.Sequential:
    """The press locator's network: a spatial 1x1 mix, then dilated temporal convolutions
    (``PRESS_DILATIONS``) that keep one output per time step."""
    layers: list[nn.Module] = [nn.Conv1d(n_chans, n_filters, kernel_size=1, bias=False),
                               nn.BatchNorm1d(n_filters), nn.GELU()]
    for dilation in PRESS_DILATIONS:
        layers += [nn.Conv1d(n_filters, n_filters, kernel_size=5, dilation=dilation,
                             padding=2 * dilation, bias=False),
                   nn.BatchNorm1d(n_filters), nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


def window_step_times(n_times: int, sfreq_hz: float, window_start_s: float) -> torch.Tensor:
    """The time after the stimulus of each step of a window, (T,) seconds."""
    return window_start_s + torch.arange(n_times, dtype=torch.float32) / sfreq_hz


def press_label(step_times_s: torch.Tensor, rt_s: torch.Tensor, sd_s: float) -> torch.Tensor:
    """A Gaussian of ``sd_s`` over the window's steps (B, T), summing to 1, centred on each
    RT (B,): a press before or after the window at the window's nearest step."""
    first, last = step_times_s[0], step_times_s[-1]
    centre = torch.minimum(torch.maximum(rt_s.float(), first), last).unsqueeze(1)
    return torch.softmax(-0.5 * ((step_times_s - centre) / sd_s) ** 2, dim=-1)


def dense_cross_entropy(scores: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The mean cross-entropy of step scores (B, T logits) against a label over the steps:
    every step is told whether the press is there."""
    return -(label * torch.log_softmax(scores, dim=-1)).sum(dim=-1).mean()
