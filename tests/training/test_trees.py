"""Fitting the trees: scikit-learn's trees as torch tensors, the model folder, the
submission."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from overnight.champion.submission import build_submission, check_in_fresh_process
from overnight.config import GBMConfig
from overnight.evaluation import load_trained_model, nrmse, predict
from overnight.features.cache import read_features
from overnight.models.gbm import FeatureTrees
from overnight.models.registry import find_model
from overnight.training.fit import train_model
from overnight.training.trees import NODE_TENSORS, fit_trees, tree_tensors
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split
from tests.conftest import TINY_TRAIN

FAST = GBMConfig(max_iter=60, n_iter_no_change=10, min_samples_leaf=5)


def _as_model(trees: dict) -> FeatureTrees:
    """A FeatureTrees holding ``tree_tensors``' node tensors."""
    model = FeatureTrees(n_trees=trees["n_trees"], n_nodes=trees["n_nodes"],
                         max_depth=trees["max_depth"])
    model.set_standardization({**{n: torch.from_numpy(trees[n]) for n in NODE_TENSORS},
                               "base_rt": torch.tensor(trees["base_rt"])})
    return model


def test_the_tensors_answer_what_scikit_learn_answers():
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 6)).astype(np.float32)
    y = 1.5 + 0.3 * np.sin(2 * x[:, 0]) + 0.2 * x[:, 1] * x[:, 2] + rng.normal(0, 0.05, 3000)
    regressor = HistGradientBoostingRegressor(max_iter=80, max_leaf_nodes=15).fit(x, y)
    trees = tree_tensors(regressor)
    model = _as_model(trees)
    assert trees["n_trees"] == 80
    held_out = rng.normal(size=(2000, 6)).astype(np.float32)
    with torch.inference_mode():
        ours = model.tree_rt(torch.from_numpy(held_out)).squeeze(1).numpy()
    np.testing.assert_allclose(ours, regressor.predict(held_out), atol=1e-5)


def test_trees_without_a_split_keep_their_value():
    """On too little data no split helps: each tree is one leaf, which hummingbird-ml
    reads as a split worth -1; the staged predictions mend it."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from overnight.training.trees import _mend_single_leaf_trees

    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = 1.5 + rng.normal(0.0, 0.3, 50)
    regressor = HistGradientBoostingRegressor(max_iter=7, min_samples_leaf=40).fit(x, y)
    trees = tree_tensors(regressor)
    model = _as_model(trees)
    with torch.inference_mode():
        assert not np.allclose(model.tree_rt(torch.from_numpy(x)).squeeze(1).numpy(),
                               regressor.predict(x), atol=1e-3)  # hummingbird's reading
        assert _mend_single_leaf_trees(model, regressor, x) == 7
        np.testing.assert_allclose(model.tree_rt(torch.from_numpy(x)).squeeze(1).numpy(),
                                   regressor.predict(x), atol=1e-5)


@pytest.fixture(scope="module")
def trees_dir(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("gbm") / "gbm"
    train_model("gbm", tiny_data.windows, tiny_data.split, out, TINY_TRAIN, tiny_data.features,
                gbm=FAST)
    return out


def test_the_trees_stop_on_the_tune_subjects_and_say_so(trees_dir, tiny_data):
    meta = json.loads((trees_dir / "model.json").read_text())
    assert meta["model"] == "gbm" and meta["inputs"] == ["features"]
    assert 1 <= meta["best_epoch"] <= meta["epochs_run"] <= FAST.max_iter
    assert meta["conversion_max_error_s"] < 1e-3 and "hummingbird-ml" in meta["library"]
    state = torch.load(trees_dir / "model.pt", weights_only=True)
    assert state["node_left"].dtype == torch.int64
    model, _ = load_trained_model(trees_dir)
    split = read_split(tiny_data.split)
    tune = load_windows(tiny_data.windows, split["tune"])
    # the recorded tune score is the model's own answer, features computed from the window
    assert nrmse(tune.rt, predict(model, tune.eeg)) == pytest.approx(meta["best_tune_nrmse"],
                                                                     abs=1e-4)
    cached, _ = read_features(tiny_data.features, tune.index)
    np.testing.assert_allclose(predict(model, tune.eeg),
                               predict(model, tune.eeg, features=torch.from_numpy(cached)),
                               atol=1e-3)
    low, high = model.rt_min.item(), model.rt_max.item()
    rt = predict(model, tune.eeg * 1e6)  # microvolts read as volts: still in range
    assert np.isfinite(rt).all() and (rt >= low).all() and (rt <= high).all()


def test_a_trees_submission_needs_only_torch(trees_dir, tiny_data, tmp_path):
    files = build_submission(trees_dir, tmp_path / "sub")
    assert sum(name.startswith("weights_") for name in files) == 1
    source = (tmp_path / "sub" / "submission.py").read_text()
    imports = re.findall(r"^\s*(?:import|from)\s+(\w+)", source, flags=re.MULTILINE)
    assert not {"sklearn", "hummingbird", "overnight"} & set(imports)
    val = load_windows(tiny_data.windows, read_split(tiny_data.split)["val"])
    model, _ = load_trained_model(trees_dir)
    check_in_fresh_process(tmp_path / "sub", val.eeg, predict(model, val.eeg), val.sfreq_hz)


def test_only_a_feature_trees_model_can_be_fitted_as_trees(tiny_data, tmp_path):
    baseline = find_model("baseline")
    with pytest.raises(TypeError, match="subclass FeatureTrees"):
        fit_trees(baseline, tiny_data.windows, tiny_data.split, tiny_data.features, tmp_path,
                  FAST)
