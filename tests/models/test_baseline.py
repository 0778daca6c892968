"""The baseline CNN, its backbones and its input scaling."""

import pytest
import torch

from overnight.models.registry import find_model
from tests.models.helpers import fitted

# The arguments the registry-wide tests build it with (tests/models/test_registry.py).
CASE = {"n_filters": 8}


def test_target_standardisation_is_applied():
    model = find_model("baseline").build(**CASE).eval()
    model.set_standardization({"target_mean": torch.tensor(1.6), "target_std": torch.tensor(2.0)})
    x = torch.zeros(2, 129, 200)
    with torch.inference_mode():
        raw = model.standardized_output(x)
        out = model(x)
    torch.testing.assert_close(out, raw * 2.0 + 1.6)


def test_window_normalization_ignores_the_input_scale():
    # the baseline only: the hybrid's features are physical quantities, only its CNN is
    # scale-free
    model = fitted("baseline", "window")
    x = torch.randn(3, 129, 200) * 1e-5
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model(x * 1e6), rtol=1e-4, atol=1e-5)


def test_gain_normalization_ignores_offsets_and_the_window_gain():
    model = fitted("baseline", "gain")
    x = torch.randn(3, 129, 200) * 1e-5
    offsets = torch.randn(3, 129, 1) * 1e-3  # a DC offset per channel and window
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model(x * 7.0 + offsets), rtol=1e-4, atol=1e-5)
        # the channels' relative amplitudes still matter
        louder = x.clone()
        louder[:, :20] *= 5.0
        assert not torch.allclose(model(x), model(louder))


@pytest.mark.parametrize("backbone", ["conv", "eegnet"])
def test_every_backbone_builds_baseline_and_hybrid(backbone):
    torch.manual_seed(0)
    x = torch.randn(3, 129, 200) * 1e-5
    for name in ("baseline", "hybrid"):
        model = find_model(name).build(n_filters=8, backbone=backbone).eval()
        with torch.inference_mode():
            assert model(x).shape == (3, 1)
    with pytest.raises(ValueError, match="eegnet"):
        find_model("baseline").build(backbone="transformer")


def test_eegnet_has_few_spatial_weights():
    conv = find_model("baseline").build(n_filters=16)
    eegnet = find_model("baseline").build(n_filters=16, backbone="eegnet")
    count = sum(p.numel() for p in eegnet.parameters())
    assert count < sum(p.numel() for p in conv.parameters()) / 4
    # the spatial filters: depth x temporal filters x channels, no more
    spatial = eegnet.backbone.convs[2].weight
    assert spatial.shape == (16, 1, 129, 1)
