"""braindecode's EEGNeX as the peer row: recorded as not run where braindecode cannot import,
trained, compared and shipped like any model where it can (the marked tests)."""

import shutil

import numpy as np
import pytest
import torch

from overnight.champion.compare import compare_and_promote
from overnight.champion.submission import build_submission, check_in_fresh_process
from overnight.config import CompareConfig
from overnight.evaluation import load_trained_model, predict
from overnight.models.base import ModelUnavailable
from overnight.models.eegnex import EEGNeXPeer
from overnight.models.registry import find_model
from overnight.report.context import build_report_context
from overnight.report.render import render_report
from overnight.training.fit import train_model
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split
from tests.conftest import TINY_TRAIN
from tests.helpers import skip_without_eegnex

REASON = "braindecode's EEGNeX cannot be imported (OSError: libtorchaudio.so: no such file)"
# braindecode's own widths: nothing to set
CASE: dict = {}


@pytest.fixture
def without_braindecode(monkeypatch):
    def missing() -> type[torch.nn.Module]:
        raise ModelUnavailable(REASON)

    monkeypatch.setattr(EEGNeXPeer, "network_class", staticmethod(missing))


def test_a_model_whose_library_cannot_import_says_why(without_braindecode):
    assert EEGNeXPeer.unavailable() == REASON
    assert find_model("baseline").cls.unavailable() is None
    with pytest.raises(ModelUnavailable, match="torchaudio"):
        find_model("eegnex").build()


def test_a_model_that_cannot_run_is_a_row_that_says_why(tiny_night, tmp_path,
                                                          without_braindecode):
    models = tmp_path / "models"
    shutil.copytree(tiny_night.models / "baseline", models / "baseline")
    meta = train_model("eegnex", tiny_night.windows, tiny_night.split, models / "eegnex",
                       TINY_TRAIN)
    assert meta["not_run"] == REASON
    assert not (models / "eegnex" / "model.pt").exists()

    result = compare_and_promote(models, tiny_night.windows, tiny_night.split,
                                 tmp_path / "submission", tmp_path / "night" / "comparison.json",
                                 CompareConfig(max_ms_per_window=0.0))
    row = next(r for r in result["rows"] if r["name"] == "eegnex")
    assert row["not_run"] == REASON and row["nrmse"] is None
    assert result["decision"]["model"] == "baseline"  # the others compete as before

    shutil.copytree(models, tmp_path / "night" / "models")
    context = build_report_context(tmp_path / "night", None, {})
    table_row = next(r for r in context["table"]["rows"] if r["name"] == "eegnex")
    assert table_row["not_run"] == REASON
    assert "eegnex" not in context["curves"]["missing"]
    html = render_report(context, tmp_path / "reports", "2026-11-27").read_text()
    assert "not run" in html and "no such file" in html
    row = html[html.index('<td class="name">eegnex'):]
    assert "NaN/failed" not in row[:row.index("</tr>")]  # not run is not a failure


@pytest.mark.eegnex
@skip_without_eegnex
def test_eegnex_trains_and_ships_a_submission_that_runs_alone(tiny_data, tmp_path):
    out = tmp_path / "models" / "eegnex"
    meta = train_model("eegnex", tiny_data.windows, tiny_data.split, out, TINY_TRAIN)
    assert "not_run" not in meta and meta["best_epoch"] >= 1
    assert meta["model_args"] == {"n_chans": 129, "n_times": 200, "normalization": "train",
                                  "sfreq_hz": 100.0}
    model, _ = load_trained_model(out)
    val = load_windows(tiny_data.windows, read_split(tiny_data.split)["val"])
    expected = predict(model, val.eeg)
    assert np.isfinite(expected).all()
    build_submission(out, tmp_path / "submission")
    check_in_fresh_process(tmp_path / "submission", val.eeg, expected, val.sfreq_hz)
