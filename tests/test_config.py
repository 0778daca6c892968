"""The settings: defaults, overrides, and the allowed values the config owns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from overnight.config import (
    SECTIONS,
    CompareConfig,
    Config,
    SynthConfig,
    TrainConfig,
    WindowsConfig,
    load_config,
)


def test_defaults_are_valid_and_every_setting_is_declared():
    config = load_config()
    assert config == Config()
    for section in SECTIONS:
        for spec in dataclasses.fields(section):
            if spec.name != "name":
                assert spec.default is not dataclasses.MISSING, (section.name, spec.name)


def test_file_then_overrides(tmp_path):
    path = tmp_path / "night.toml"
    path.write_text("[train]\nmax_epochs = 30\nlr = 1\n[windows]\nval_fraction = 0.3\n")
    config = load_config(path, ["train.max_epochs=5", "train.device=cpu"])
    assert config.train.max_epochs == 5 and config.train.device == "cpu"
    assert config.train.lr == 1.0 and type(config.train.lr) is float  # TOML 1 for 1.0
    assert config.windows.val_fraction == 0.3
    assert config.synth == SynthConfig()


@pytest.mark.parametrize(("overrides", "error", "match"), [
    (["trian.lr=1"], ValueError, r"unknown section\(s\) \['trian'\]; allowed"),
    (["train.max_epoch=5"], ValueError, r"unknown key\(s\) \['max_epoch'\]; allowed: .*"
                                        "max_epochs"),
    (["train.max_epochs=five"], TypeError, r"\[train\] max_epochs = 'five': expected int"),
    (["train.batch_size=0"], ValueError, r"\[train\] batch_size = 0: expected >= 1"),
    (["train.dropout=1.0"], ValueError, r"\[train\] dropout = 1.0: expected < 1.0"),
    (["train.precision=fp8"], ValueError, r"precision = 'fp8': expected one of "
                                          r"\['auto', 'fp32', 'bf16'\]"),
    (["windows.val_fraction=0"], ValueError, r"val_fraction = 0.0: expected > 0.0"),
    (["synth.runs_per_subject=4"], ValueError, r"runs_per_subject = 4: expected <= 3"),
    (["synth.sfreq_hz=250"], ValueError, r"sfreq_hz = 250.0: expected one of \[100.0, 500.0\]"),
    (["compare.margin=-0.1"], ValueError, r"margin = -0.1: expected >= 0.0"),
    (["data.workers=0"], ValueError, r"\[data\] workers = 0: expected >= 1"),
    (["train.lr=nan"], ValueError, r"lr = nan: expected a finite number"),
    (["train"], ValueError, "expected section.key=value"),
])
def test_bad_settings_name_the_setting_and_what_is_allowed(overrides, error, match):
    with pytest.raises(error, match=match):
        load_config(None, overrides)


def test_sections_check_their_values_when_built_in_code():
    with pytest.raises(ValueError, match=r"\[train\] patience = 0: expected >= 1"):
        TrainConfig(patience=0)
    with pytest.raises(TypeError, match=r"\[compare\] margin = 1: expected float"):
        CompareConfig(margin=1)  # type: ignore[arg-type]


def test_settings_that_go_together():
    assert WindowsConfig().n_times == 200
    assert WindowsConfig(sfreq_hz=500.0).n_times == 1000
    with pytest.raises(ValueError, match="expected stop after start by at least one sample"):
        WindowsConfig(window_start_s=0.5, window_stop_s=0.5)
    with pytest.raises(ValueError, match="expected l_freq_hz < h_freq_hz"):
        WindowsConfig(l_freq_hz=40.0, h_freq_hz=30.0)


def test_a_file_s_error_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nbatch_size = -1\n")
    with pytest.raises(ValueError, match=rf"{path}: \[train\] batch_size = -1"):
        load_config(path)


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.toml")),
                         ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    assert isinstance(load_config(path), Config)


def test_the_harder_synthetic_setting_is_harder() -> None:
    hard = load_config(Path(__file__).parents[1] / "configs" / "synth-hard.toml").synth
    default = SynthConfig()
    assert hard.n_subjects < default.n_subjects
    assert hard.task_signal_scale < default.task_signal_scale
    assert hard.subject_sd > default.subject_sd
    assert hard.spatial_sd_m > 0 and hard.latency_sd_s > 0
