"""The timing network: the RT from when things happen."""

import torch

from overnight.models.registry import find_model

CASE = {"n_filters": 8}


def test_the_timing_network_starts_as_its_first_traces_time():
    torch.manual_seed(0)
    model = find_model("timing").build(**CASE).eval()
    x = torch.randn(3, 129, 200) * 1e-5
    with torch.inference_mode():
        traces = model.evidence(model.temporal(model.scale_input(x))).float()
        centred = traces - traces.mean(dim=-1, keepdim=True)
        z = centred / centred.std(dim=-1, keepdim=True).clamp_min(1e-6)
        weights = torch.softmax(z[:, :1] * model.sharpness[0], dim=-1)
        first_s = (weights * model.step_times_s).sum(dim=-1)  # (B, 1)
        expected = (first_s - model.target_mean) / model.target_std
        torch.testing.assert_close(model.standardized_output(x), expected)


def test_the_timing_net_with_dense_targets_learns_where_the_press_is():
    from tests.models.test_press import _held_out_error

    losses: list[float] = []
    found = _held_out_error(targets_match=True, name="timing", losses=losses)
    assert losses[-1] < 0.6 * losses[0]
    assert found < 0.5 * _held_out_error(targets_match=True, dense_weight=0.0, name="timing")
