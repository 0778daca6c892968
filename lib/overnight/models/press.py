"""The press locator: the RT as where the button press lies in the window."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from overnight.models.backbones import (
    dense_cross_entropy,
    dilated_temporal,
    press_label,
    window_step_times,
)
from overnight.models.base import Batch, RTModel, register


@register("press", inputs=("eeg",))
class PressLocator(RTModel):
    """RT as locating the button press in time (the challenge's 3rd and 5th entries).

    A temporal network scores every time step of the window (dilated convolutions that
    keep the time axis); a softmax over time turns the scores into where the press lies,
    and the expected time under it, plus the window's start after the stimulus, is the RT.
    Training asks every step whether the press is there (``loss``: a dense target beside
    the RT's squared error). A press outside the window is reached only in the limit,
    which the clamp to the training RTs covers either way.
    """

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3, sfreq_hz: float = 100.0, window_start_s: float = 0.5,
                 normalization: str = "window", dense_weight: float = 1.0,
                 press_label_sd_s: float = 0.05) -> None:
        super().__init__(n_chans, normalization)
        self.temporal = dilated_temporal(n_chans, n_filters, dropout)
        self.score = nn.Conv1d(n_filters, 1, kernel_size=1)
        self.register_buffer("step_times_s",
                             window_step_times(n_times, sfreq_hz, window_start_s))
        self.dense_weight = dense_weight
        self.press_label_sd_s = press_label_sd_s

    def press_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The score of every step of the window, (B, T) logits of where the press is."""
        return self.score(self.temporal(self.scale_input(x))).squeeze(1).float()

    def press_time_s(self, x: torch.Tensor) -> torch.Tensor:
        """The expected press time after the stimulus, (B, 1) seconds."""
        return self._expected_time_s(self.press_scores(x))

    def _expected_time_s(self, scores: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(scores, dim=-1)
        return (weights * self.step_times_s).sum(dim=-1, keepdim=True)

    def corrected(self, located: torch.Tensor, x: torch.Tensor,
                  features: torch.Tensor | None) -> torch.Tensor:
        """The standardised RT from the located one; a subclass adds its correction."""
        return located

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        return self._output_from_scores(self.press_scores(x), x, features)

    def standardized_response(self, x: torch.Tensor
                              ) -> Callable[[torch.Tensor | None], torch.Tensor]:
        return functools.partial(self._output_from_scores, self.press_scores(x), x)

    def _output_from_scores(self, scores: torch.Tensor, x: torch.Tensor,
                            features: torch.Tensor | None) -> torch.Tensor:
        located = (self._expected_time_s(scores) - self.target_mean) / self.target_std
        return self.corrected(located, x, features)

    def loss(self, batch: Batch) -> torch.Tensor:
        """The RT's squared error (standardised) plus ``dense_weight`` x the cross-entropy
        of the step scores against ``press_label``."""
        scores = self.press_scores(batch.eeg)
        out = self._output_from_scores(scores, batch.eeg, batch.features).squeeze(1)
        loss = nn.functional.mse_loss(out.float(), batch.target)
        if self.dense_weight > 0:
            rt_s = batch.target * self.target_std + self.target_mean
            label = press_label(self.step_times_s, rt_s, self.press_label_sd_s)
            loss = loss + self.dense_weight * dense_cross_entropy(scores, label)
        return loss
