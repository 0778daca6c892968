"""The press locator with the dense target and per-window scaling, fixed."""

import torch

from overnight.config import TrainConfig
from overnight.models.registry import find_model
from overnight.training.loop import model_arguments

CASE = {"n_filters": 8}


def test_its_recipe_holds_whatever_the_train_settings_say():
    model = find_model("press-dense")
    offered = model_arguments(model.cls, TrainConfig(normalization="train", dense_weight=0.0),
                              {"n_chans": 129, "n_times": 200, "sfreq_hz": 100.0,
                               "window_start_s": 0.5})
    assert "normalization" not in offered and "dense_weight" not in offered
    net = model.build(**offered)
    assert (net.normalization, net.dense_weight) == ("window", 1.0)
    x = torch.randn(2, 129, 200) * 1e-5
    with torch.inference_mode():  # scale-free: microvolts answer as volts do
        torch.testing.assert_close(net.eval()(x * 1e6), net(x))
