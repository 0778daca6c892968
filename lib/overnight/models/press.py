"""The press locator: the RT as where the button press lies in the window."""

from __future__ import annotations

import torch
from torch import nn

from overnight.models.backbones import dilated_temporal, window_step_times
from overnight.models.base import RTModel, register


@register("press", inputs=("eeg",))
class PressLocator(RTModel):
    """RT as locating the button press in time (the challenge's 3rd and 5th entries).

    A temporal network scores every time step of the window (dilated convolutions that
    keep the time axis); a softmax over time turns the scores into where the press lies,
    and the expected time under it, plus the window's start after the stimulus, is the RT.
    A press outside the window is reached only in the limit, which the clamp to the
    training RTs covers either way.
    """

    def __init__(self, n_chans: int = 129, n_times: int = 200, n_filters: int = 32,
                 dropout: float = 0.3, sfreq_hz: float = 100.0, window_start_s: float = 0.5,
                 normalization: str = "train") -> None:
        super().__init__(n_chans, normalization)
        self.temporal = dilated_temporal(n_chans, n_filters, dropout)
        self.score = nn.Conv1d(n_filters, 1, kernel_size=1)
        self.register_buffer("step_times_s",
                             window_step_times(n_times, sfreq_hz, window_start_s))

    def press_time_s(self, x: torch.Tensor) -> torch.Tensor:
        """The expected press time after the stimulus, (B, 1) seconds."""
        logits = self.score(self.temporal(self.scale_input(x))).squeeze(1)  # (B, T)
        weights = torch.softmax(logits.float(), dim=-1)
        return (weights * self.step_times_s).sum(dim=-1, keepdim=True)

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        return (self.press_time_s(x) - self.target_mean) / self.target_std
