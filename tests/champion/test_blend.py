"""The blend of the night's models: its weights, its folder, its submission, and what it
leaves out."""

import json
import shutil

import numpy as np
import pytest

from overnight.champion.blend import MIN_WEIGHT, blend_weights, fit_blend, write_blend
from overnight.champion.compare import compare_and_promote
from overnight.champion.submission import build_submission, check_in_fresh_process
from overnight.config import CompareConfig
from overnight.evaluation import load_trained_model, predict
from overnight.training import checkpoint
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split


def _mse(predictions, weights, y):
    return float(np.mean((predictions @ weights - y) ** 2))


def test_the_weights_are_a_convex_combination_never_worse_than_the_best_model():
    rng = np.random.default_rng(0)
    y = rng.normal(1.5, 0.4, 2000)
    # two models with independent errors, one that only adds noise, one anti-correlated
    predictions = np.stack([y + rng.normal(0, 0.2, y.size), y + rng.normal(0, 0.2, y.size),
                            np.full_like(y, y.mean()) + rng.normal(0, 0.4, y.size),
                            2 * y.mean() - y], axis=1)
    weights = blend_weights(predictions, y)
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()
    assert weights[0] == pytest.approx(0.5, abs=0.05)
    assert weights[1] == pytest.approx(0.5, abs=0.05)
    assert weights[3] == 0.0
    assert all(_mse(predictions, weights, y) <= _mse(predictions, np.eye(4)[k], y)
               for k in range(4))
    assert ((weights == 0) | (weights >= MIN_WEIGHT)).all()


def test_one_model_far_better_than_the_others_takes_all_the_weight():
    rng = np.random.default_rng(1)
    y = rng.normal(1.5, 0.4, 500)
    predictions = np.stack([y + rng.normal(0, 0.01, y.size),
                            np.full_like(y, 1.5) + rng.normal(0, 0.3, y.size)], axis=1)
    np.testing.assert_array_equal(blend_weights(predictions, y), [1.0, 0.0])


def _tune(night):
    return load_windows(night.windows, read_split(night.split)["tune"])


def _night_with_tune_predictions(night, tmp_path, noise_s):
    """Copies of the tiny night's models whose tune predictions are the truth plus
    independent noise of ``noise_s`` (name -> seconds): a blend halves their errors."""
    models = tmp_path / "models"
    tune = _tune(night)
    rng = np.random.default_rng(0)
    for name, noise in noise_s.items():
        shutil.copytree(night.models / name, models / name)
        np.savez(models / name / checkpoint.TUNE_PREDICTIONS_FILE, index=tune.index,
                 rt_s=tune.rt + rng.normal(0, noise, len(tune.rt)))
    return models


def test_fit_blend_weighs_the_models_by_their_tune_predictions(tiny_night, tmp_path):
    models = _night_with_tune_predictions(tiny_night, tmp_path,
                                          {"baseline": 0.2, "hybrid": 0.2})
    done = fit_blend(models, tiny_night.windows, tiny_night.split)
    assert done["written"] and done["left_out"] == {}
    assert sum(done["weights"].values()) == pytest.approx(1.0)
    assert min(done["weights"].values()) > 0.3
    assert done["tune_nrmse"] < 0.8 * min(done["tune_nrmse_by_model"].values())
    meta = json.loads((models / "blend" / "model.json").read_text())
    assert meta["best_tune_nrmse"] == done["tune_nrmse"]

    models = _night_with_tune_predictions(tiny_night, tmp_path / "one",
                                          {"baseline": 0.01, "hybrid": 0.5})
    done = fit_blend(models, tiny_night.windows, tiny_night.split)
    assert not done["written"] and "baseline alone takes all the weight" in done["why"]
    assert not (models / "blend").exists()


def test_the_blend_is_a_model_folder_that_ships_as_one_submission(tiny_night, tmp_path):
    models = tmp_path / "models"
    for name in ("baseline", "hybrid"):
        shutil.copytree(tiny_night.models / name, models / name)
    weights = {"baseline": 0.4, "hybrid": 0.6}
    write_blend(models, weights, tune_nrmse=0.9, n_tune_windows=10)
    blend, meta = load_trained_model(models / "blend")
    assert meta["model"] == "blend" and meta["inputs"] == ["eeg", "features"]
    assert [(m["name"], m["weight"]) for m in meta["members"]] == list(weights.items())
    val = load_windows(tiny_night.windows, read_split(tiny_night.split)["val"])
    singles = {name: load_trained_model(models / name)[0] for name in weights}
    expected = sum(w * predict(singles[name], val.eeg) for name, w in weights.items())
    np.testing.assert_allclose(predict(blend, val.eeg), expected, rtol=1e-5)

    build_submission(models / "blend", tmp_path / "sub")
    source = (tmp_path / "sub" / "submission.py").read_text()
    assert "BLEND_WEIGHTS = [0.4, 0.6]" in source and "class HybridCNN" in source
    assert "A blend of 2 models (baseline 0.400, hybrid 0.600)" in source
    check_in_fresh_process(tmp_path / "sub", val.eeg, predict(blend, val.eeg), val.sfreq_hz)


def test_compare_scores_the_blend_as_a_row_with_its_weights(tiny_night, tmp_path):
    models = _night_with_tune_predictions(tiny_night, tmp_path,
                                          {"baseline": 0.2, "hybrid": 0.2})
    result = compare_and_promote(models, tiny_night.windows, tiny_night.split,
                                 tmp_path / "submission", tmp_path / "c.json",
                                 CompareConfig(margin=0.01, max_ms_per_window=0.0))
    row = next(r for r in result["rows"] if r["name"] == "blend")
    assert row["nrmse"] is not None and row["blend_weights"] == result["blend"]["weights"]
    # scored from its members' predictions: what the module itself answers
    val = load_windows(tiny_night.windows, read_split(tiny_night.split)["val"])
    blend, _ = load_trained_model(models / "blend")
    np.testing.assert_allclose(result["validation"]["predictions"]["blend"],
                               predict(blend, val.eeg), atol=1e-6)
    off = compare_and_promote(models, tiny_night.windows, tiny_night.split,
                              tmp_path / "submission", tmp_path / "c2.json",
                              CompareConfig(margin=0.01, blend=False, max_ms_per_window=0.0))
    assert "blend" not in {r["name"] for r in off["rows"]}
    assert not (models / "blend").exists()  # last night's blend is not scored again


def test_models_whose_tune_predictions_cannot_be_trusted_are_left_out(tiny_night, tmp_path):
    models = tmp_path / "models"
    for name in ("baseline", "hybrid", "refitted", "old", "skipped"):
        shutil.copytree(tiny_night.models / ("hybrid" if name == "hybrid" else "baseline"),
                        models / name)
    refitted = json.loads((models / "refitted" / "model.json").read_text())
    refitted["refit"] = {"epochs": 2}
    (models / "refitted" / "model.json").write_text(json.dumps(refitted))
    (models / "old" / checkpoint.TUNE_PREDICTIONS_FILE).unlink()
    (models / "skipped" / "model.json").write_text(json.dumps({"model": "eegnex",
                                                               "not_run": "no braindecode"}))
    done = fit_blend(models, tiny_night.windows, tiny_night.split)
    assert set(done["left_out"]) == {"refitted", "old", "skipped"}
    assert "refitted on the tune subjects" in done["left_out"]["refitted"]
    shutil.rmtree(models / "hybrid")
    shutil.rmtree(models / "baseline")
    assert not fit_blend(models, tiny_night.windows, tiny_night.split)["written"]
    assert not (models / "blend").exists()
