import json
import math
import re
import shutil

import numpy as np
import pytest
import torch

from overnight import atomic
from overnight.champion.compare import compare_and_promote, rollback
from overnight.champion.gate import decide
from overnight.champion.record import CHAMPION_FILE, install, read_champion
from overnight.champion.submission import (
    SUBMISSION_FILE,
    build_submission,
    check_in_fresh_process,
)
from overnight.config import CompareConfig
from overnight.evaluation import load_trained_model, predict
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split

MARGIN = CompareConfig(margin=0.01)

# --- The gate ---------------------------------------------------------------------------

def test_gate_promotes_best_when_there_is_no_champion():
    decision = decide({"baseline": 0.8, "hybrid": 0.7}, None, MARGIN)
    assert decision.promoted and decision.model == "hybrid"


def test_gate_never_promotes_a_worse_model():
    decision = decide({"baseline": 0.8, "hybrid": 0.75}, 0.74, MARGIN)
    assert not decision.promoted and decision.model is None
    assert "champion stays" in decision.reason


def test_gate_needs_the_margin():
    assert not decide({"hybrid": 0.735}, 0.74, MARGIN).promoted  # 0.7 % better: not enough
    assert decide({"hybrid": 0.73}, 0.74, MARGIN).promoted  # 1.4 % better


@pytest.mark.parametrize("bad", [math.nan, math.inf, None])
def test_gate_never_promotes_nan(bad):
    decision = decide({"hybrid": bad}, 0.9, MARGIN)
    assert not decision.promoted
    decision = decide({"hybrid": bad}, None, MARGIN)
    assert not decision.promoted
    decision = decide({"hybrid": bad, "baseline": 0.95}, None, MARGIN)
    assert decision.model == "baseline"


def test_gate_replaces_a_broken_champion():
    decision = decide({"baseline": 0.9}, None, MARGIN, champion_problem="weights missing")
    assert decision.promoted and "weights missing" in decision.reason


def test_gate_rejects_negative_margin():
    with pytest.raises(ValueError, match="margin"):
        CompareConfig(margin=-0.1)


# --- The submission ---------------------------------------------------------------------

def _val(night):
    split = read_split(night.split)
    return load_windows(night.windows, split["val"])


def test_submission_runs_in_a_fresh_process_without_the_project(tiny_night, tmp_path):
    model_dir = tiny_night.models / "hybrid"
    files = build_submission(model_dir, tmp_path / "sub")
    assert set(files) == {SUBMISSION_FILE, "submission.zip", *[
        n for n in files if n.startswith("weights_hybrid_")]}
    source = (tmp_path / "sub" / SUBMISSION_FILE).read_text()
    assert not re.search(r"^\s*(import|from)\s+overnight\b", source, re.MULTILINE)
    val = _val(tiny_night)
    model, _ = load_trained_model(model_dir)
    expected = predict(model, val.eeg)
    check_in_fresh_process(tmp_path / "sub", val.eeg, expected, val.sfreq_hz)
    with pytest.raises(RuntimeError, match="differ"):
        check_in_fresh_process(tmp_path / "sub", val.eeg, expected + 0.01, val.sfreq_hz)


def test_fresh_process_check_blocks_project_imports(tiny_night, tmp_path):
    sub = tmp_path / "sub"
    build_submission(tiny_night.models / "baseline", sub)
    source = (sub / SUBMISSION_FILE).read_text()
    future = "from __future__ import annotations\n"
    (sub / SUBMISSION_FILE).write_text(source.replace(future, future + "import overnight\n"))
    val = _val(tiny_night)
    with pytest.raises(RuntimeError, match="must not import the overnight project"):
        check_in_fresh_process(sub, val.eeg[:4], np.zeros(4), val.sfreq_hz)


def test_submission_is_deterministic(tiny_night, tmp_path):
    first = build_submission(tiny_night.models / "baseline", tmp_path / "a")
    second = build_submission(tiny_night.models / "baseline", tmp_path / "b")
    assert first == second


# --- Compare, install, rollback -----------------------------------------------------------

def test_compare_promotes_then_keeps_the_champion(tiny_night, tmp_path):
    submission = tmp_path / "submission"
    first = compare_and_promote(tiny_night.models, tiny_night.windows, tiny_night.split,
                                submission, tmp_path / "c1.json", MARGIN, tiny_night.truth)
    names = {r["name"] for r in first["rows"]}
    assert {"baseline", "hybrid", "mean predictor", "floor"} <= names
    assert first["decision"]["promoted"]
    champion = read_champion(submission)
    assert champion["model"] == first["decision"]["model"]
    for name, digest in champion["files"].items():
        assert atomic.sha256_file(submission / name) == digest
    before = {p.name: p.read_bytes() for p in submission.iterdir() if p.is_file()}

    second = compare_and_promote(tiny_night.models, tiny_night.windows, tiny_night.split,
                                 submission, tmp_path / "c2.json", MARGIN, tiny_night.truth)
    assert not second["decision"]["promoted"]
    champion_row = next(r for r in second["rows"] if r["kind"] == "champion")
    best = min(r["nrmse"] for r in second["rows"] if r["kind"] == "model")
    assert champion_row["nrmse"] == pytest.approx(best, abs=1e-6)
    after = {p.name: p.read_bytes() for p in submission.iterdir() if p.is_file()}
    assert after == before
    saved = json.loads((tmp_path / "c2.json").read_text())
    assert len(saved["validation"]["y_true"]) == saved["split"]["n_val_windows"]


def test_a_nan_model_is_never_promoted(tiny_night, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(tiny_night.models / "baseline", models / "baseline")
    state = torch.load(models / "baseline" / "model.pt", weights_only=True)
    state["backbone.embed.1.weight"].fill_(math.nan)
    torch.save(state, models / "baseline" / "model.pt")
    result = compare_and_promote(models, tiny_night.windows, tiny_night.split,
                                 tmp_path / "submission", tmp_path / "c.json", MARGIN)
    assert not result["decision"]["promoted"]
    assert result["rows"][0]["nrmse"] is None
    assert not (tmp_path / "submission" / CHAMPION_FILE).exists()


def test_failed_check_leaves_the_champion_untouched(tiny_night, tmp_path):
    submission = tmp_path / "submission"
    (submission / ".staging-killed").mkdir(parents=True)  # left by a run killed mid-install
    val = _val(tiny_night)
    model, _ = load_trained_model(tiny_night.models / "baseline")
    expected = predict(model, val.eeg)
    install(tiny_night.models / "baseline", submission, val.eeg, expected, val.sfreq_hz,
            {"model": "baseline", "nrmse": 0.9})
    assert not (submission / ".staging-killed").exists()
    before = {p.name: p.read_bytes() for p in submission.iterdir()}
    with pytest.raises(RuntimeError):
        install(tiny_night.models / "hybrid", submission, val.eeg, expected + 1.0,
                val.sfreq_hz, {"model": "hybrid", "nrmse": 0.8})
    assert {p.name: p.read_bytes() for p in submission.iterdir()} == before


def test_rollback_restores_the_exact_bytes(tiny_night, tmp_path):
    submission = tmp_path / "submission"
    val = _val(tiny_night)
    for name in ("baseline", "hybrid"):
        model, _ = load_trained_model(tiny_night.models / name)
        install(tiny_night.models / name, submission, val.eeg, predict(model, val.eeg),
                val.sfreq_hz, {"model": name, "nrmse": 0.9})
        if name == "baseline":
            baseline_bytes = {p.name: p.read_bytes() for p in submission.iterdir()
                              if p.name != CHAMPION_FILE}
    assert read_champion(submission)["model"] == "hybrid"
    record = rollback(tiny_night.models / "baseline", tiny_night.windows, tiny_night.split,
                      submission)
    assert record["model"] == "baseline"
    assert "rollback" in record["reason"]
    assert [r["model"] for r in record["previous"]] == ["hybrid", "baseline"]
    restored = {p.name: p.read_bytes() for p in submission.iterdir() if p.name != CHAMPION_FILE}
    assert restored == baseline_bytes
