"""Shared fixtures: one tiny synthetic night (BIDS -> windows -> split -> features -> models),
built once per test session through the real pipeline code."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from overnight.config import FeaturesConfig, SynthConfig, TrainConfig, WindowsConfig

TINY_SYNTH = SynthConfig(n_subjects=6, runs_per_subject=1, trials_per_run=24, seed=7)
TINY_TRAIN = TrainConfig(max_epochs=2, patience=2, batch_size=32, n_filters=8, ensemble=1,
                         device="cpu")


@dataclasses.dataclass(frozen=True)
class TinyNight:
    bids_root: Path
    windows: Path
    split: Path
    features: Path
    models: Path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> TinyNight:
    """Synthetic BIDS, window cache, split and features for 6 subjects."""
    from overnight.features.cache import build_feature_cache
    from overnight.hbn.synth import generate_dataset
    from overnight.windows.build import build_window_cache
    from overnight.windows.split import write_split

    root = tmp_path_factory.mktemp("night")
    bids = root / "bids"
    generate_dataset(bids, TINY_SYNTH, progress=False)
    windows, split, features = root / "windows.h5", root / "split.json", root / "features.h5"
    windows_cfg = WindowsConfig(val_fraction=0.34)
    build_window_cache(bids, windows, windows_cfg, progress=False)
    write_split(windows, split, windows_cfg)
    build_feature_cache(windows, features, FeaturesConfig(), progress=False)
    return TinyNight(bids, windows, split, features, root / "models")


@pytest.fixture(scope="session")
def tiny_night(tiny_data: TinyNight) -> TinyNight:
    """``tiny_data`` plus a baseline and a hybrid trained for two epochs."""
    from overnight.training.fit import train_model

    for name in ("baseline", "hybrid"):
        train_model(name, tiny_data.windows, tiny_data.split, tiny_data.models / name,
                    TINY_TRAIN, tiny_data.features)
    return tiny_data
