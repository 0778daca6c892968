"""A training killed mid-way resumes from its checkpoint to the same model."""

import pytest
import torch

from overnight.atomic import read_json_lines
from overnight.training import loop
from overnight.training.fit import train_model
from tests.conftest import TINY_TRAIN


def test_resume_after_a_crash_gives_the_same_model(tiny_data, tmp_path, monkeypatch):
    cfg = TINY_TRAIN.__class__(**{**TINY_TRAIN.__dict__, "max_epochs": 3, "patience": 3})
    straight = train_model("baseline", tiny_data.windows, tiny_data.split,
                                    tmp_path / "straight", cfg)

    real_epoch = loop.train_epoch
    calls = {"n": 0}

    def crash_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated crash")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop, "train_epoch", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        train_model("baseline", tiny_data.windows, tiny_data.split,
                             tmp_path / "crashed", cfg)
    assert not (tmp_path / "crashed" / "model.json").exists()
    monkeypatch.setattr(loop, "train_epoch", real_epoch)
    resumed = train_model("baseline", tiny_data.windows, tiny_data.split,
                                   tmp_path / "crashed", cfg)

    assert resumed["best_tune_nrmse"] == pytest.approx(straight["best_tune_nrmse"], rel=1e-6)
    assert [r["epoch"] for r in read_json_lines(tmp_path / "crashed" / "history.jsonl")] == [
        1, 2, 3]
    a = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "crashed" / "model.pt", weights_only=True)
    for key in a:
        torch.testing.assert_close(a[key], b[key])
