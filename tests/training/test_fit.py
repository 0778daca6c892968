"""train_model, for every kind of model: what it must never read, what it needs."""

from pathlib import Path

import numpy as np
import pytest
import torch

from overnight.champion.blend import fit_blend
from overnight.config import GBMConfig
from overnight.training.fit import train_model
from overnight.windows.split import read_split
from tests.conftest import TINY_TRAIN
from tests.helpers import record_cache_reads


def test_hybrid_without_features_is_an_error(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="reads the features"):
        train_model("hybrid", tiny_data.windows, tiny_data.split, tmp_path, TINY_TRAIN)


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
    training writes or in the blend of what it trained, and no read of the caches touches
    their rows."""
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
            metas[kind] = (train_model(name, windows, tiny_data.split, out, TINY_TRAIN,
                                       features, gbm=cfg) if name == "gbm" else
                           train_model(name, windows, tiny_data.split, out, cfg, features))
        assert metas["clean"]["best_tune_nrmse"] == metas["poisoned"]["best_tune_nrmse"]
        clean = torch.load(tmp_path / "clean" / name / "model.pt", weights_only=True)
        dirty = torch.load(tmp_path / "poisoned" / name / "model.pt", weights_only=True)
        assert clean.keys() == dirty.keys()
        for key in clean:
            torch.testing.assert_close(clean[key], dirty[key], rtol=0, atol=0)
    # nor in the blend compare fits on the models' tune predictions
    blends = {kind: fit_blend(tmp_path / kind, windows, tiny_data.split)
              for kind, windows in (("clean", tiny_data.windows),
                                    ("poisoned", poisoned["windows"]))}
    assert set(blends["clean"]["tune_nrmse_by_model"]) == {"baseline", "hybrid", "gbm"}
    assert blends["clean"] == blends["poisoned"]
    assert read and not np.isin(np.concatenate(read), val_rows).any()
