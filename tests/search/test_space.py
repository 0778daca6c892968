"""The search space: every entry a real setting within its allowed range, drawn through a
real Optuna trial, and the TOML diff a person can paste into a config."""

from __future__ import annotations

import dataclasses
import sys

import optuna
import pytest

from overnight.config import NightConfig, TrainConfig, load_config
from overnight.models.registry import builtin_names
from overnight.search import space

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FAMILIES = space.families(load_config(None))


def test_every_entry_is_a_train_setting_or_a_family_with_a_reason():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for p in space.search_space(FAMILIES):
        assert p.why, p.name
        if p.name == space.FAMILY:
            assert set(p.choices) <= set(builtin_names())
        else:
            assert p.name in fields, f"{p.name} is no [train] setting"


@pytest.mark.parametrize("p", space.TRAIN_SPACE, ids=lambda p: p.name)
def test_every_range_end_is_a_valid_setting(p):
    for value in p.choices or (p.low, p.high):
        if p.integer:
            value = int(value)
        elif not p.choices:
            value = float(value)
        TrainConfig(**{p.name: value})  # raises outside [train]'s allowed values


def test_a_trial_draws_every_entry_and_the_crop_stays_in_the_margin():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        values = space.suggest(study.ask(), margin_s=0.2, families=FAMILIES)
        assert list(values) == [p.name for p in space.search_space(FAMILIES)]
        assert 0.0 <= values["crop_shift_s"] <= 0.2
        family, cfg = space.trial_settings(TrainConfig(), values)
        assert family in ("baseline", "hybrid", "timing") and cfg.lr == values["lr"]
    # a cache without a margin gets no shifted crops: the night's 0 stands
    assert "crop_shift_s" not in space.suggest(study.ask(), margin_s=0.0, families=FAMILIES)


def test_trial_settings_refuses_an_unknown_parameter():
    with pytest.raises(ValueError, match="'max_epochs'"):
        space.trial_settings(TrainConfig(), {"model": "baseline", "max_epochs": 3})
    with pytest.raises(ValueError, match="'model' is missing"):
        space.trial_settings(TrainConfig(), {"lr": 1e-3})


def test_the_families_follow_the_nights_models_and_name_the_study():
    night = load_config(None, ["night.models=['hybrid', 'press', 'baseline']"])
    assert space.families(night) == ("hybrid", "baseline")  # press is not searched
    assert space.space_signature(space.families(night)) != space.space_signature(FAMILIES)
    with pytest.raises(ValueError, match="declares searched=True"):
        space.families(load_config(None, ["night.models=['press', 'gbm']"]))
    assert NightConfig().models == ()  # every registered model: the families above


def test_the_toml_diff_holds_what_differs_and_adopts_cleanly(tmp_path):
    night = TrainConfig(lr=1e-3, dropout=0.3)
    best = {"model": "hybrid", "lr": 4.2e-4, "dropout": 0.3, "n_filters": 16,
            "backbone": "eegnet", "ensemble": 2, "ema_epochs": 2.0}
    lines = space.toml_diff(best, night)
    text = "\n".join(lines)
    assert "dropout" not in text  # unchanged
    assert "lr = 0.00042  # now 0.001" in lines
    table = tomllib.loads(text)["train"]
    assert table == {"lr": 4.2e-4, "n_filters": 16, "backbone": "eegnet", "ensemble": 2,
                     "ema_epochs": 2.0}
    (tmp_path / "adopted.toml").write_text(text)
    adopted = load_config(tmp_path / "adopted.toml").train
    assert (adopted.lr, adopted.backbone, adopted.ensemble) == (4.2e-4, "eegnet", 2)
    assert space.toml_diff({"lr": 1e-3}, night)[-1].startswith("# every searched setting")


def test_search_max_epochs_caps_every_trial_and_zero_keeps_the_nights():
    night = load_config(None, ["train.max_epochs=12", "train.patience=4"])
    assert space.trial_base(night) is night.train
    capped = space.trial_base(load_config(None, ["train.max_epochs=12", "train.patience=4",
                                                 "search.max_epochs=3"]))
    assert (capped.max_epochs, capped.patience) == (3, 3)
    family, cfg = space.trial_settings(capped, {"model": "hybrid", "lr": 2e-4})
    assert (family, cfg.max_epochs, cfg.lr) == ("hybrid", 3, 2e-4)
