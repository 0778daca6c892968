"""The press locator corrected by the features."""

import torch

from overnight.models.registry import find_model

CASE = {"n_filters": 8}


def test_press_hybrid_starts_as_the_press_locator():
    torch.manual_seed(0)
    hybrid = find_model("press-hybrid").build(**CASE).eval()
    x = torch.randn(2, 129, 200) * 1e-5
    with torch.inference_mode():
        located = (hybrid.press_time_s(x) - hybrid.target_mean) / hybrid.target_std
        torch.testing.assert_close(hybrid.standardized_output(x), located)
