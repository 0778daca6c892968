import math

import numpy as np
import pytest

from overnight.evaluation import nrmse, rmse


def test_mean_predictor_scores_exactly_one():
    rng = np.random.default_rng(0)
    y = rng.normal(1.6, 0.4, size=500)
    assert nrmse(y, np.full_like(y, y.mean())) == pytest.approx(1.0, abs=1e-12)


def test_uses_population_std_not_range():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = y + 0.5
    assert nrmse(y, pred) == pytest.approx(0.5 / np.std(y, ddof=0))
    assert nrmse(y, y) == 0.0


def test_non_finite_prediction_gives_nan():
    y = np.array([1.0, 2.0, 3.0])
    assert math.isnan(nrmse(y, np.array([1.0, np.nan, 3.0])))
    assert math.isnan(nrmse(y, np.array([1.0, np.inf, 3.0])))


@pytest.mark.parametrize(("y_true", "y_pred"), [
    (np.ones(5), np.ones(5)),  # constant target: std 0
    (np.arange(3.0), np.arange(4.0)),  # shape mismatch
    (np.array([1.0]), np.array([1.0])),  # too few values
])
def test_invalid_inputs_raise(y_true, y_pred):
    with pytest.raises(ValueError):
        nrmse(y_true, y_pred)


def test_rmse_is_in_seconds():
    y = np.array([1.0, 2.0, 1.0, 2.0])
    assert rmse(y, y + np.array([0.0, 0.0, 1.0, 1.0])) == pytest.approx(np.sqrt(0.5))
