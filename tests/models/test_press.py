"""The press locator: the RT as where the press lies."""

import pytest
import torch

from overnight.models.registry import find_model

CASE = {"n_filters": 8}


def test_the_press_locator_answers_the_expected_press_time_after_the_stimulus():
    model = find_model("press").build(n_filters=8, sfreq_hz=100.0, window_start_s=0.5).eval()
    with torch.no_grad():
        model.score.weight.zero_()
        model.score.bias.zero_()
    x = torch.randn(2, 129, 200) * 1e-5
    with torch.inference_mode():
        # flat scores: the press is equally likely at every step from 0.50 to 2.49 s
        torch.testing.assert_close(model.press_time_s(x), torch.full((2, 1), 0.5 + 0.995))
        assert model.step_times_s[0] == 0.5 and model.step_times_s[-1] == pytest.approx(2.49)
