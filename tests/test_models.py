import pytest
import torch

from overnight.features.spec import FEATURE_NAMES, window_features
from overnight.models import MODELS, build_model

# Every registered model must have a case here: a new model without one fails the suite.
MODEL_CASES = {"baseline": {"n_filters": 8}, "hybrid": {"n_filters": 8}}


def test_every_registered_model_has_a_case():
    assert set(MODEL_CASES) == set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
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


def test_hybrid_computes_its_own_features_from_the_window():
    torch.manual_seed(0)
    model = build_model("hybrid", n_filters=8).eval()
    x = torch.randn(3, 129, 200) * 1e-4
    features = window_features(x, 100.0, 0.5)
    assert features.shape == (3, len(FEATURE_NAMES))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model(x, features))


def test_unknown_model_lists_the_choices():
    with pytest.raises(ValueError, match="baseline"):
        build_model("transformer")
