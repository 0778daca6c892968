"""Per-release window caches joined by an HDF5 virtual dataset: the same windows, split and
training as one cache built from both releases, without a second copy of the windows."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from overnight.config import WindowsConfig
from overnight.training.fit import train_model
from overnight.windows.build import build_window_cache
from overnight.windows.cache import COLUMNS, cache_summary, join_caches, open_cache
from overnight.windows.split import write_split
from tests.conftest import TINY_TRAIN


def _release(tiny_data, tmp_path, name, subjects):
    """A BIDS root holding some of the tiny dataset's subjects (links), as a release."""
    root = tmp_path / name
    root.mkdir()
    for entry in tiny_data.bids_root.iterdir():
        if entry.is_file() or entry.name in subjects or entry.name == "derivatives":
            (root / entry.name).symlink_to(entry)
    return root


def test_joined_release_caches_match_one_cache_of_both(tiny_data, tmp_path):
    subjects = sorted(p.name for p in tiny_data.bids_root.glob("sub-*"))
    roots = [_release(tiny_data, tmp_path, "R1", subjects[:3]),
             _release(tiny_data, tmp_path, "R2", subjects[3:])]
    cfg = WindowsConfig(val_fraction=0.34, workers=1)
    parts = [tmp_path / "R1.h5", tmp_path / "R2.h5"]
    for root, part in zip(roots, parts, strict=True):
        build_window_cache([root], part, cfg, progress=False)
    build_window_cache(roots, tmp_path / "both.h5", cfg, progress=False)
    n = join_caches(parts, tmp_path / "joined.h5")

    with h5py.File(tmp_path / "joined.h5") as joined:
        assert joined["eeg"].is_virtual  # the windows stay in the parts
    assert (tmp_path / "joined.h5").stat().st_size < parts[0].stat().st_size / 10
    with open_cache(tmp_path / "joined.h5") as joined, open_cache(tmp_path / "both.h5") as both:
        assert n == joined.n_windows == both.n_windows
        np.testing.assert_array_equal(joined.eeg[()], both.eeg[()])
        for name in COLUMNS:
            np.testing.assert_array_equal(joined.column(name), both.column(name))
        assert joined.attr_json("sources") == both.attr_json("sources")
    split_joined = write_split(tmp_path / "joined.h5", tmp_path / "joined.json", cfg)
    split_both = write_split(tmp_path / "both.h5", tmp_path / "both.json", cfg)
    assert split_joined == split_both
    summary, whole = cache_summary(tmp_path / "joined.h5"), cache_summary(tmp_path / "both.h5")
    assert {k: v for k, v in summary.items() if k not in ("created", "path")} == \
        {k: v for k, v in whole.items() if k not in ("created", "path")}  # the report's view

    runs = {name: train_model("baseline", tmp_path / f"{name}.h5", tmp_path / f"{name}.json",
                              tmp_path / f"model-{name}", TINY_TRAIN)
            for name in ("joined", "both")}
    assert runs["joined"]["best_tune_nrmse"] == runs["both"]["best_tune_nrmse"]

    # a part rebuilt since, or gone, is an error, not misaligned windows or zeros
    build_window_cache([roots[1]], parts[1], cfg, progress=False)
    with pytest.raises(ValueError, match="rebuilt after the join"), \
            open_cache(tmp_path / "joined.h5"):
        pass
    parts[1].rename(tmp_path / "moved.h5")
    with pytest.raises(FileNotFoundError, match=r"R2\.h5"), open_cache(tmp_path / "joined.h5"):
        pass


def test_a_join_refuses_parts_that_do_not_fit(tiny_data, tmp_path):
    cfg = WindowsConfig(val_fraction=0.34, workers=1)
    build_window_cache([tiny_data.bids_root], tmp_path / "a.h5", cfg, progress=False)
    with pytest.raises(ValueError, match="at least two"):
        join_caches([tmp_path / "a.h5"], tmp_path / "j.h5")
    with pytest.raises(ValueError, match=r"is in .* and in"):  # the same subjects twice
        join_caches([tmp_path / "a.h5", tiny_data.windows], tmp_path / "j.h5")
    other = dataclasses.replace(cfg, window_stop_s=2.0)
    build_window_cache([tiny_data.bids_root], tmp_path / "short.h5", other, progress=False)
    with pytest.raises(ValueError, match="differ"):
        join_caches([tmp_path / "a.h5", tmp_path / "short.h5"], tmp_path / "j.h5")
    assert not (tmp_path / "j.h5").exists()
