import math

import numpy as np
import pytest

from overnight.evaluation import interval, nrmse, rmse, subject_bootstrap


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


def test_subject_bootstrap_resamples_subjects_and_pairs_the_models():
    rng = np.random.default_rng(0)
    subjects = np.repeat(["A", "B", "C", "D"], [30, 5, 20, 10])
    y = rng.normal(1.5, 0.4, len(subjects))
    good, bad = y + rng.normal(0, 0.1, len(y)), y + rng.normal(0, 0.4, len(y))
    boot = subject_bootstrap(y, {"good": good, "bad": bad}, subjects, 500, seed=3)
    assert boot["good"].shape == (500,)
    assert (boot["good"] < boot["bad"]).all()  # paired: the same resamples for both
    low, high = interval(boot["good"], 0.9)
    assert low < nrmse(y, good) < high
    again = subject_bootstrap(y, {"good": good}, subjects, 500, seed=3)
    np.testing.assert_allclose(again["good"], boot["good"], rtol=1e-12)  # same resamples
    # one subject with one window: every resample has no spread, so no score
    lone = subject_bootstrap(np.array([1.0]), {"m": np.array([1.2])}, ["A"], 100)
    assert np.isnan(lone["m"]).all()


def test_interval_is_the_central_share():
    values = np.arange(1001, dtype=float)
    assert interval(values, 0.9) == pytest.approx((50.0, 950.0))
    assert interval(np.append(values, np.nan), 0.5) == pytest.approx((250.0, 750.0))
