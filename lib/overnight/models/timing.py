"""The timing network: the RT from when things happen in the window."""

from __future__ import annotations

import torch
from torch import nn

from overnight.models.backbones import (
    dense_cross_entropy,
    dilated_temporal,
    press_label,
    window_step_times,
)
from overnight.models.base import Batch, RTModel, register


@register("timing", inputs=("eeg",), searched=True)
class TimingNet(RTModel):
    """The RT from *when* things happen in the window, not from how large they are.

    A temporal network (the press locator's dilated convolutions) writes ``n_heads``
    evidence traces over time; each trace is z-scored over the window, so its size and
    offset cannot move it, and read out as the expected time under a softmax (the press
    locator's read-out, the challenge's third and fifth entries' idea), with how peaked
    that softmax is. A linear head combines these times and peaks with the window's mean
    activity. It starts as the first trace's time alone. Like the press locator, it can
    learn from a dense time target (``dense_weight``): the first trace's softmax against a
    Gaussian label at the press.
    """

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3, sfreq_hz: float = 100.0, window_start_s: float = 0.5,
                 normalization: str = "window", n_heads: int = 4, dense_weight: float = 1.0,
                 press_label_sd_s: float = 0.05) -> None:
        super().__init__(n_chans, normalization)
        self.temporal = dilated_temporal(n_chans, n_filters, dropout)
        self.evidence = nn.Conv1d(n_filters, n_heads, kernel_size=1)
        # softmax sharpness on the z-scored traces, learned per head
        self.sharpness = nn.Parameter(torch.full((n_heads,), 3.0))
        self.register_buffer("step_times_s",
                             window_step_times(n_times, sfreq_hz, window_start_s))
        self.head = nn.Linear(2 * n_heads + n_filters, 1)
        with torch.no_grad():  # starts as the first head's time, in standardised units
            self.head.weight.zero_()
            self.head.weight[0, 0] = 1.0
            self.head.bias.zero_()
        self.dense_weight = dense_weight
        self.press_label_sd_s = press_label_sd_s

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        return self._read_out(x)[0]

    def _read_out(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The standardised RT (B, 1), and the first trace's step scores (B, T) logits."""
        activity = self.temporal(self.scale_input(x))  # (B, F, T)
        traces = self.evidence(activity).float()  # (B, K, T)
        centred = traces - traces.mean(dim=-1, keepdim=True)
        z = centred / centred.std(dim=-1, keepdim=True).clamp_min(1e-6)
        scores = z * self.sharpness[:, None]
        weights = torch.softmax(scores, dim=-1)
        times_s = (weights * self.step_times_s).sum(dim=-1)  # (B, K)
        times = (times_s - self.target_mean) / self.target_std
        peaks = weights.amax(dim=-1)  # (B, K): 1 / T when flat, 1 when certain
        out = self.head(torch.cat([times, peaks, activity.float().mean(dim=-1)], dim=1))
        return out, scores[:, 0]

    def loss(self, batch: Batch) -> torch.Tensor:
        """The RT's squared error (standardised) plus ``dense_weight`` x the cross-entropy
        of the first trace's scores against the press label."""
        out, scores = self._read_out(batch.eeg)
        loss = nn.functional.mse_loss(out.squeeze(1).float(), batch.target)
        if self.dense_weight > 0:
            rt_s = batch.target * self.target_std + self.target_mean
            label = press_label(self.step_times_s, rt_s, self.press_label_sd_s)
            loss = loss + self.dense_weight * dense_cross_entropy(scores, label)
        return loss
