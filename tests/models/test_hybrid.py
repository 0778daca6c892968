"""The hybrid: the CNN with the feature branch."""

import pytest
import torch

from overnight.features.spec import FEATURE_NAMES, window_features
from overnight.models.registry import find_model

CASE = {"n_filters": 8}


@pytest.mark.parametrize("name", ["hybrid", "press-hybrid"])
def test_a_feature_model_computes_its_own_features_from_the_window(name):
    torch.manual_seed(0)
    model = find_model(name).build(n_filters=8).eval()
    x = torch.randn(3, 129, 200) * 1e-4
    features = window_features(x, 100.0, 0.5)
    assert features.shape == (3, len(FEATURE_NAMES))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), model(x, features))


def test_the_features_statistics_go_into_the_branch():
    model = find_model("hybrid").build(**CASE)
    model.set_standardization({"feature_mean": torch.arange(len(FEATURE_NAMES)).float()})
    assert model.branch.feature_mean[3] == 3.0
