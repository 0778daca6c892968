import math

import numpy as np
import pytest
import torch

from overnight.evaluation import (
    error_by_rt_bin,
    interval,
    nrmse,
    permutation_importance,
    rmse,
    subject_bootstrap,
)
from overnight.models.base import RTModel


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


class _ReadsFirstFeature(RTModel):
    """A stand-in model whose answer is its first feature (the window is ignored)."""

    def __init__(self) -> None:
        super().__init__(n_chans=2)

    def standardized_output(self, x: torch.Tensor,
                            features: torch.Tensor | None = None) -> torch.Tensor:
        return features[:, :1]


def test_permutation_importance_finds_the_family_the_model_reads():
    rng = np.random.default_rng(0)
    features = rng.normal(1.5, 0.4, (300, 3)).astype(np.float32)
    y = features[:, 0].astype(np.float64)
    subjects = np.repeat([f"S{k}" for k in range(10)], 30)
    result = permutation_importance(_ReadsFirstFeature(), np.zeros((300, 2, 4), np.float32),
                                    features, y, subjects, {"read": [0], "ignored": [1, 2]},
                                    n_resamples=200, level=0.9, repeats=2)
    # shuffled, the first feature is as good as a random guess with its spread: NRMSE ~ 1.4
    assert 1.2 < result["read"]["delta_nrmse"] < 1.6
    assert result["read"]["interval"][0] > 1.0
    assert result["ignored"] == {"delta_nrmse": 0.0, "interval": [0.0, 0.0]}


def test_error_by_rt_bin_per_model():
    y = np.array([0.3, 0.7, 0.8, 1.2, 2.2])
    rows = error_by_rt_bin(y, {"exact": y, "late": y + 0.1, "mean": np.full(5, 1.04)})
    assert [r["label"] for r in rows] == ["< 0.5 s", "0.5-1 s", "1-1.5 s", ">= 2 s"]
    assert [r["n_windows"] for r in rows] == [1, 2, 1, 1]
    assert all(r["rmse_s"]["exact"] == 0.0 for r in rows)
    assert [r["bias_s"]["late"] for r in rows] == pytest.approx([0.1] * 4)
    assert rows[0]["rmse_s"]["mean"] == pytest.approx(0.74)  # blind to the early press
    assert (rows[0]["low_s"], rows[0]["high_s"], rows[-1]["high_s"]) == (None, 0.5, None)
