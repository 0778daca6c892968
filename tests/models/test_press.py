"""The press locator: the RT as where the press lies."""

import pytest
import torch

from overnight.models.backbones import press_label
from overnight.models.base import Batch
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


def test_the_press_label_sums_to_one_and_peaks_at_the_press_or_the_nearest_step():
    model = find_model("press").build(n_filters=8)
    label = press_label(model.step_times_s, torch.tensor([1.0, 0.2, 9.0]), 0.05)
    torch.testing.assert_close(label.sum(dim=-1), torch.ones(3))
    assert model.step_times_s[label.argmax(dim=-1)].tolist() == pytest.approx([1.0, 0.5, 2.49])


def _press_windows(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise windows (volts) with a brief deflection on a few channels at the press."""
    rt = 0.6 + 1.7 * torch.rand(n, generator=generator)
    x = torch.randn(n, 129, 200, generator=generator) * 1e-5
    steps = ((rt - 0.5) * 100).long()
    for i, step in enumerate(steps):
        x[i, :12, step:step + 3] += 3e-5
    return x, rt


def _held_out_error(targets_match: bool, dense_weight: float = 1.0, steps: int = 40,
                    name: str = "press", losses: list | None = None) -> float:
    """The squared RT error (in target stds) on new windows after ``steps`` of training
    (``losses`` gets each step's training loss): about 1 for a model that predicts the
    mean."""
    generator = torch.Generator().manual_seed(0)
    x, rt = _press_windows(96, generator)
    x_new, rt_new = _press_windows(64, generator)
    if not targets_match:  # the windows say nothing about the targets
        rt = rt[torch.randperm(len(rt), generator=generator)]
    torch.manual_seed(0)
    model = find_model(name).build(n_filters=8, dropout=0.0, dense_weight=dense_weight)
    model.set_standardization({"target_mean": rt.mean(), "target_std": rt.std(),
                               "input_std": torch.full((129, 1), 1e-5)})
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = model.loss(Batch(x, None, (rt - rt.mean()) / rt.std()))
        if losses is not None:
            losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.inference_mode():
        error = model.eval().standardized_output(x_new).squeeze(1) - (rt_new - rt.mean()) / rt.std()
    return error.pow(2).mean().item()


def test_a_locator_with_dense_targets_learns_where_the_press_is():
    losses: list[float] = []
    found = _held_out_error(targets_match=True, losses=losses)
    assert losses[-1] < 0.6 * losses[0]  # its training loss falls: it learns
    assert found < 0.3  # it found the press
    assert found < 0.5 * _held_out_error(targets_match=True, dense_weight=0.0)  # sooner
    assert _held_out_error(targets_match=False) > 0.8  # nothing to find: no better than the mean
