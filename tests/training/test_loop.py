"""The training loop: its files, what it keeps, the refit."""

import json

import numpy as np
import pytest
import torch

from overnight.atomic import read_json_lines
from overnight.evaluation import load_trained_model, nrmse, predict
from overnight.training.fit import train_model
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split
from tests.conftest import TINY_TRAIN


def test_outputs_and_weights_only_loading(tiny_night):
    out = tiny_night.models / "hybrid"
    meta = json.loads((out / "model.json").read_text())
    assert meta["model"] == "hybrid" and meta["epochs_run"] == 2
    state = torch.load(out / "model.pt", weights_only=True)
    assert "input_mean" in state and "branch.feature_std" in state and "rt_max" in state
    history = read_json_lines(out / "history.jsonl")
    assert [row["epoch"] for row in history] == [1, 2]
    assert min(r["tune_nrmse"] for r in history) == pytest.approx(meta["best_tune_nrmse"])


def test_standardisation_comes_from_the_training_split_only(tiny_night):
    split = read_split(tiny_night.split)
    train = load_windows(tiny_night.windows, split["train"])
    model, _ = load_trained_model(tiny_night.models / "baseline")
    np.testing.assert_allclose(model.target_mean.item(), train.rt.mean(dtype=np.float64),
                               rtol=1e-6)
    np.testing.assert_allclose(model.input_mean.squeeze(1).numpy(),
                               train.eeg.mean(axis=(0, 2), dtype=np.float64), rtol=1e-5,
                               atol=1e-12)


def test_best_weights_reproduce_the_recorded_tune_score(tiny_night):
    split = read_split(tiny_night.split)
    tune = load_windows(tiny_night.windows, split["tune"])
    model, meta = load_trained_model(tiny_night.models / "baseline")
    assert nrmse(tune.rt, predict(model, tune.eeg)) == pytest.approx(meta["best_tune_nrmse"],
                                                                     rel=1e-5)
    assert meta["inputs"] == ["eeg"] and meta["n_tune_windows"] == len(tune)


@pytest.mark.parametrize("name", ["press", "press-hybrid"])
def test_the_press_models_train_and_reload(tiny_data, tmp_path, name):
    out = tmp_path / name
    meta = train_model(name, tiny_data.windows, tiny_data.split, out, TINY_TRAIN,
                                tiny_data.features)
    assert np.isfinite(meta["best_tune_nrmse"])
    assert meta["model_args"]["window_start_s"] == 0.5
    model, _ = load_trained_model(out)
    split = read_split(tiny_data.split)
    tune = load_windows(tiny_data.windows, split["tune"])
    score = nrmse(tune.rt.astype(np.float64), predict(model, tune.eeg))
    assert score == pytest.approx(meta["best_tune_nrmse"], abs=1e-4)


def test_a_refit_trains_on_the_tune_subjects_too_for_the_chosen_epochs(tiny_data, tmp_path):
    import dataclasses

    cfg = dataclasses.replace(TINY_TRAIN, max_epochs=3, patience=3, refit=True)
    meta = train_model("baseline", tiny_data.windows, tiny_data.split,
                                tmp_path / "refit", cfg)
    selection = json.loads((tmp_path / "refit" / "selection" / "model.json").read_text())
    split = read_split(tiny_data.split)
    n_fit = len(load_windows(tiny_data.windows, split["train"] + split["tune"]))
    assert meta["n_train_windows"] == n_fit > selection["n_train_windows"]
    assert meta["epochs_run"] == meta["best_epoch"] == selection["best_epoch"]
    assert meta["best_tune_nrmse"] == selection["best_tune_nrmse"]
    assert meta["refit"]["subjects"] == ["train", "tune"]
    history = read_json_lines(tmp_path / "refit" / "history.jsonl")
    assert [row["epoch"] for row in history] == list(range(1, selection["best_epoch"] + 1))
    # the model shipped is the refit's last epoch, not the selection's
    refit = torch.load(tmp_path / "refit" / "model.pt", weights_only=True)
    chosen = torch.load(tmp_path / "refit" / "selection" / "model.pt", weights_only=True)
    assert not torch.equal(refit["head.weight"], chosen["head.weight"])
