import pytest
import torch

from overnight.config import TrainConfig
from overnight.features.spec import FEATURE_NAMES, window_features
from overnight.models import (
    MODELS,
    NORMALIZATIONS,
    ConstantPredictor,
    EEGNeXPeer,
    ModelUnavailable,
    build_model,
)
from tests.helpers import model_names

# Every registered model must have a case here: a new model without one fails the suite.
# EEGNeX keeps braindecode's own widths.
MODEL_CASES = {**{name: {"n_filters": 8} for name in ("baseline", "hybrid", "press",
                                                      "press-hybrid")},
               "eegnex": {}, "gbm": {"n_trees": 3, "n_nodes": 5, "max_depth": 2},
               "timing": {"n_filters": 8}}


def test_every_registered_model_has_a_case():
    assert set(MODEL_CASES) == set(MODELS)


@pytest.mark.parametrize("name", model_names())
def test_forward_shape_and_eval_determinism(name):
    torch.manual_seed(0)
    model = build_model(name, **MODEL_CASES[name]).eval()
    x = torch.randn(5, 129, 200) * 1e-4
    with torch.inference_mode():
        first, second = model(x), model(x)
    assert first.shape == (5, 1)
    assert torch.equal(first, second)
    assert torch.isfinite(first).all()


def test_target_standardisation_is_applied():
    model = build_model("baseline", n_filters=8).eval()
    model.set_standardization({"target_mean": torch.tensor(1.6), "target_std": torch.tensor(2.0)})
    x = torch.zeros(2, 129, 200)
    with torch.inference_mode():
        raw = model.standardized_output(x)
        out = model(x)
    torch.testing.assert_close(out, raw * 2.0 + 1.6)


@pytest.mark.parametrize("name", ["hybrid", "press-hybrid"])
def test_hybrid_computes_its_own_features_from_the_window(name):
    torch.manual_seed(0)
    model = build_model(name, n_filters=8).eval()
    x = torch.randn(3, 129, 200) * 1e-4
    features = window_features(x, 100.0, 0.5)
    assert features.shape == (3, len(FEATURE_NAMES))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model(x, features))


def test_unknown_model_lists_the_choices():
    with pytest.raises(ValueError, match="baseline"):
        build_model("transformer")


def _fitted(name: str, normalization: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(name, **MODEL_CASES[name], normalization=normalization).eval()
    model.set_standardization({"target_mean": torch.tensor(1.5), "target_std": torch.tensor(0.4),
                               "rt_min": torch.tensor(0.4), "rt_max": torch.tensor(2.8),
                               "input_std": torch.full((129, 1), 1e-5)})
    return model


@pytest.mark.parametrize("normalization", NORMALIZATIONS)
@pytest.mark.parametrize("name", model_names())
def test_any_input_gives_a_finite_rt_in_the_training_range(name, normalization):
    model = _fitted(name, normalization)
    x = torch.randn(4, 129, 200) * 1e-5
    nan_channel = x.clone()
    nan_channel[:, 54] = float("nan")
    inf_sample = x.clone()
    inf_sample[0, 3, 7] = float("inf")
    with torch.inference_mode():
        for probe in (x, x * 1e6, x * 1e12, nan_channel, inf_sample, torch.zeros_like(x),
                      torch.full_like(x, float("nan"))):
            rt = model(probe)
            assert torch.isfinite(rt).all() and (rt >= 0.4).all() and (rt <= 2.8).all()
        # one bad channel does not spoil the other windows of the batch
        mixed = x.clone()
        mixed[0] = float("nan")
        torch.testing.assert_close(model(mixed)[1:], model(x)[1:])


def test_window_normalization_ignores_the_input_scale():
    # the baseline only: the hybrid's features are physical quantities, only its CNN is
    # scale-free
    model = _fitted("baseline", "window")
    x = torch.randn(3, 129, 200) * 1e-5
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model(x * 1e6), rtol=1e-4, atol=1e-5)


def test_normalizations_match_the_config():
    for normalization in NORMALIZATIONS:
        assert TrainConfig(normalization=normalization).normalization == normalization
    with pytest.raises(ValueError, match="normalization"):
        TrainConfig(normalization="robust")
    with pytest.raises(ValueError, match="normalization"):
        build_model("baseline", normalization="robust")


def test_constant_predictor_answers_one_number_per_window():
    out = ConstantPredictor(0.25)(torch.zeros(3, 129, 200))
    assert out.shape == (3, 1) and torch.equal(out, torch.full((3, 1), 0.25))


def test_the_press_locator_answers_the_expected_press_time_after_the_stimulus():
    model = build_model("press", n_filters=8, sfreq_hz=100.0, window_start_s=0.5).eval()
    with torch.no_grad():
        model.score.weight.zero_()
        model.score.bias.zero_()
    x = torch.randn(2, 129, 200) * 1e-5
    with torch.inference_mode():
        # flat scores: the press is equally likely at every step from 0.50 to 2.49 s
        torch.testing.assert_close(model.press_time_s(x), torch.full((2, 1), 0.5 + 0.995))
        assert model.step_times_s[0] == 0.5 and model.step_times_s[-1] == pytest.approx(2.49)


def test_press_hybrid_starts_as_the_press_locator():
    torch.manual_seed(0)
    hybrid = build_model("press-hybrid", n_filters=8).eval()
    x = torch.randn(2, 129, 200) * 1e-5
    with torch.inference_mode():
        located = (hybrid.press_time_s(x) - hybrid.target_mean) / hybrid.target_std
        torch.testing.assert_close(hybrid.standardized_output(x), located)


def test_a_model_whose_library_cannot_import_says_why(monkeypatch):
    def missing() -> type[torch.nn.Module]:
        raise ModelUnavailable("braindecode's EEGNeX cannot be imported (OSError: no torchaudio)")

    monkeypatch.setattr(EEGNeXPeer, "network_class", staticmethod(missing))
    assert "no torchaudio" in EEGNeXPeer.unavailable()
    assert MODELS["baseline"].unavailable() is None
    with pytest.raises(ModelUnavailable, match="torchaudio"):
        build_model("eegnex")


@pytest.mark.parametrize("backbone", ["conv", "eegnet"])
def test_every_backbone_builds_baseline_and_hybrid(backbone):
    torch.manual_seed(0)
    x = torch.randn(3, 129, 200) * 1e-5
    for name in ("baseline", "hybrid"):
        model = build_model(name, n_filters=8, backbone=backbone).eval()
        with torch.inference_mode():
            assert model(x).shape == (3, 1)
    with pytest.raises(ValueError, match="eegnet"):
        build_model("baseline", backbone="transformer")


def test_eegnet_has_few_spatial_weights():
    conv = build_model("baseline", n_filters=16)
    eegnet = build_model("baseline", n_filters=16, backbone="eegnet")
    count = sum(p.numel() for p in eegnet.parameters())
    assert count < sum(p.numel() for p in conv.parameters()) / 4
    # the spatial filters: depth x temporal filters x channels, no more
    spatial = eegnet.backbone.convs[2].weight
    assert spatial.shape == (16, 1, 129, 1)


def test_gain_normalization_ignores_offsets_and_the_window_gain():
    model = _fitted("baseline", "gain")
    x = torch.randn(3, 129, 200) * 1e-5
    offsets = torch.randn(3, 129, 1) * 1e-3  # a DC offset per channel and window
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model(x * 7.0 + offsets), rtol=1e-4, atol=1e-5)
        # the channels' relative amplitudes still matter
        louder = x.clone()
        louder[:, :20] *= 5.0
        assert not torch.allclose(model(x), model(louder))
