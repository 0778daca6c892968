import json
from pathlib import Path

import numpy as np
import pytest
import torch

from overnight import training, trees
from overnight.atomic import read_json_lines
from overnight.config import GBMConfig
from overnight.evaluation import load_trained_model, nrmse, predict
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split

from .conftest import TINY_TRAIN
from .helpers import record_cache_reads


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


def test_resume_after_a_crash_gives_the_same_model(tiny_data, tmp_path, monkeypatch):
    cfg = TINY_TRAIN.__class__(**{**TINY_TRAIN.__dict__, "max_epochs": 3, "patience": 3})
    straight = training.train_model("baseline", tiny_data.windows, tiny_data.split,
                                    tmp_path / "straight", cfg)

    real_epoch = training._train_epoch
    calls = {"n": 0}

    def crash_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "_train_epoch", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        training.train_model("baseline", tiny_data.windows, tiny_data.split,
                             tmp_path / "crashed", cfg)
    assert not (tmp_path / "crashed" / "model.json").exists()
    monkeypatch.setattr(training, "_train_epoch", real_epoch)
    resumed = training.train_model("baseline", tiny_data.windows, tiny_data.split,
                                   tmp_path / "crashed", cfg)

    assert resumed["best_tune_nrmse"] == pytest.approx(straight["best_tune_nrmse"], rel=1e-6)
    assert [r["epoch"] for r in read_json_lines(tmp_path / "crashed" / "history.jsonl")] == [
        1, 2, 3]
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "crashed" / "model.pt", weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_hybrid_without_features_is_an_error(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="feature cache"):
        training.train_model("hybrid", tiny_data.windows, tiny_data.split, tmp_path, TINY_TRAIN)


def test_streamed_training_matches_resident_data(tiny_data, tmp_path):
    """host_cache_gb=0 streams slabs from HDF5; statistics and evaluation are unchanged."""
    from dataclasses import replace

    device = torch.device("cpu")
    small_slabs = replace(TINY_TRAIN, slab_windows=16)
    resident = training.load_split_sides(tiny_data.windows, tiny_data.split, tiny_data.features,
                                         device, small_slabs)
    streamed = training.load_split_sides(tiny_data.windows, tiny_data.split, tiny_data.features,
                                         device, replace(small_slabs, host_cache_gb=0.0))
    assert resident[0].resident and not streamed[0].resident
    for key, value in resident[3].items():
        torch.testing.assert_close(value, streamed[3][key])
    model = training.build_model("hybrid", n_filters=8).eval()
    model.set_standardization(resident[3])
    np.testing.assert_allclose(training.evaluate(model, streamed[1], 7),
                               training.evaluate(model, resident[1], 64), rtol=1e-5)
    seen = torch.cat([y for _, _, y in streamed[0].batches(10, torch.Generator())])
    torch.testing.assert_close(seen.sort().values, resident[0].y.sort().values)
    meta = training.train_model("hybrid", tiny_data.windows, tiny_data.split, tmp_path,
                                replace(small_slabs, host_cache_gb=0.0, max_epochs=1),
                                tiny_data.features)
    assert meta["data_on_device"] is False and np.isfinite(meta["best_tune_nrmse"])


@pytest.mark.parametrize("name", ["press", "press-hybrid"])
def test_the_press_models_train_and_reload(tiny_data, tmp_path, name):
    out = tmp_path / name
    meta = training.train_model(name, tiny_data.windows, tiny_data.split, out, TINY_TRAIN,
                                tiny_data.features)
    assert np.isfinite(meta["best_tune_nrmse"])
    assert meta["model_args"]["window_start_s"] == 0.5
    model, _ = load_trained_model(out)
    split = read_split(tiny_data.split)
    tune = load_windows(tiny_data.windows, split["tune"])
    score = nrmse(tune.rt.astype(np.float64), predict(model, tune.eeg))
    assert score == pytest.approx(meta["best_tune_nrmse"], abs=1e-4)


def test_an_ensemble_is_the_mean_of_its_seeds_in_one_file(tiny_data, tmp_path):
    import dataclasses

    cfg = dataclasses.replace(TINY_TRAIN, ensemble=2, seed=5)
    meta = training.train_model("baseline", tiny_data.windows, tiny_data.split,
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


def test_the_clamp_range_is_the_central_training_rts_within_the_plausible_range():
    rt = np.concatenate([np.linspace(0.6, 2.4, 1000), [0.05, 3.4]])  # two strays
    clamp = training.rt_range(rt)
    assert 0.6 <= float(clamp["rt_min"]) < 0.62 and 2.38 < float(clamp["rt_max"]) <= 2.4
    wide = training.rt_range(np.linspace(0.0, 4.0, 1000))
    assert (float(wide["rt_min"]), float(wide["rt_max"])) == pytest.approx((0.2, 3.0))
    odd = training.rt_range(np.full(10, 3.5))  # every RT beyond the plausible range
    assert float(odd["rt_min"]) == float(odd["rt_max"]) == pytest.approx(3.0)


def _poison_validation(src: Path, dst: Path, val_rows: np.ndarray, datasets: dict) -> None:
    """A copy of an HDF5 cache whose validation rows hold ``datasets[name]`` instead."""
    import shutil

    import h5py

    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as h5:
        for name, value in datasets.items():
            for row in val_rows:
                h5[name][row] = value


def test_training_never_reads_a_validation_window(tiny_data, tmp_path, monkeypatch):
    """Validation windows replaced by NaN (and their RTs by 99 s) change nothing in what
    training writes, and no read of the caches touches their rows."""
    import dataclasses

    from overnight.windows import cache as window_cache

    with window_cache.open_cache(tiny_data.windows) as cache:
        val_rows = np.flatnonzero(np.isin(cache.subjects(), read_split(tiny_data.split)["val"]))
    poisoned = {"windows": tmp_path / "windows.h5", "features": tmp_path / "features.h5"}
    _poison_validation(tiny_data.windows, poisoned["windows"], val_rows,
                       {"eeg": np.nan, "rt": 99.0})
    _poison_validation(tiny_data.features, poisoned["features"], val_rows,
                       {"features": np.nan})
    read = record_cache_reads(monkeypatch)
    for name, cfg in (("baseline", dataclasses.replace(TINY_TRAIN, ensemble=2)),
                      ("hybrid", TINY_TRAIN), ("gbm", GBMConfig(max_iter=30))):
        metas = {}
        for kind, windows, features in (("clean", tiny_data.windows, tiny_data.features),
                                        ("poisoned", poisoned["windows"],
                                         poisoned["features"])):
            out = tmp_path / kind / name
            metas[kind] = (trees.train_trees(windows, tiny_data.split, features, out, cfg)
                           if name == trees.MODEL_NAME else
                           training.train_model(name, windows, tiny_data.split, out, cfg,
                                                features))
        assert metas["clean"]["best_tune_nrmse"] == metas["poisoned"]["best_tune_nrmse"]
        clean = torch.load(tmp_path / "clean" / name / "model.pt", weights_only=True)
        dirty = torch.load(tmp_path / "poisoned" / name / "model.pt", weights_only=True)
        assert clean.keys() == dirty.keys()
        for key in clean:
            torch.testing.assert_close(clean[key], dirty[key], rtol=0, atol=0)
    assert read and not np.isin(np.concatenate(read), val_rows).any()


def test_a_refit_trains_on_the_tune_subjects_too_for_the_chosen_epochs(tiny_data, tmp_path):
    import dataclasses

    cfg = dataclasses.replace(TINY_TRAIN, max_epochs=3, patience=3, refit=True)
    meta = training.train_model("baseline", tiny_data.windows, tiny_data.split,
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
