"""An ensemble: its seeds' mean, one weights file."""

import numpy as np
import pytest
import torch

from overnight.evaluation import load_trained_model, nrmse, predict
from overnight.training.fit import train_model
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split
from tests.conftest import TINY_TRAIN


def test_an_ensemble_is_the_mean_of_its_seeds_in_one_file(tiny_data, tmp_path):
    import dataclasses

    cfg = dataclasses.replace(TINY_TRAIN, ensemble=2, seed=5)
    meta = train_model("baseline", tiny_data.windows, tiny_data.split,
                                tmp_path / "ens", cfg)
    assert meta["model_args"]["ensemble"] == 2
    assert [m["seed"] for m in meta["members"]] == [5, 6]
    model, _ = load_trained_model(tmp_path / "ens")
    first, _ = load_trained_model(tmp_path / "ens" / "member-0")
    second, _ = load_trained_model(tmp_path / "ens" / "member-1")
    split = read_split(tiny_data.split)
    tune = load_windows(tiny_data.windows, split["tune"])
    np.testing.assert_allclose(predict(model, tune.eeg),
                               (predict(first, tune.eeg) + predict(second, tune.eeg)) / 2,
                               rtol=1e-5)
    assert meta["best_tune_nrmse"] == pytest.approx(
        nrmse(tune.rt.astype(np.float64), predict(model, tune.eeg)), abs=1e-6)
    assert set(torch.load(tmp_path / "ens" / "model.pt", weights_only=True)) >= {
        "members.0.head.weight", "members.1.head.weight"}
