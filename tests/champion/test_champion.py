import json
import math
import re
import shutil

import numpy as np
import pytest
import torch

from overnight import atomic
from overnight.champion.compare import compare_and_promote, rollback
from overnight.champion.gate import HELD_BACK_BY_BOOTSTRAP, HELD_BACK_BY_MARGIN, decide
from overnight.champion.record import CHAMPION_FILE, install, read_champion
from overnight.champion.submission import (
    SUBMISSION_FILE,
    build_submission,
    check_in_fresh_process,
    probe_windows,
)
from overnight.config import CompareConfig
from overnight.evaluation import (
    load_trained_model,
    nrmse,
    permutation_importance,
    predict,
    subject_bootstrap,
)
from overnight.features.cache import read_features
from overnight.features.spec import FEATURE_FAMILIES
from overnight.hbn.channels import index_of
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split

# The promotions under test are the chain's, not the speed limit's (timed on a busy machine,
# a tiny model can pass 20 ms): it is off here and tested on its own.
MARGIN = CompareConfig(margin=0.01, max_ms_per_window=0.0)

# --- The gate ---------------------------------------------------------------------------

def test_gate_promotes_best_when_there_is_no_champion():
    decision = decide({"baseline": 0.8, "hybrid": 0.7}, None, MARGIN)
    assert decision.promoted and decision.model == "hybrid"


def test_gate_never_promotes_a_worse_model():
    decision = decide({"baseline": 0.8, "hybrid": 0.75}, 0.74, MARGIN)
    assert not decision.promoted and decision.model is None
    assert "champion stays" in decision.reason


def test_gate_needs_the_margin():
    sure = {"hybrid": 0.99}
    held = decide({"hybrid": 0.735}, 0.74, MARGIN, paired_wins=sure)  # 0.7 % better
    assert not held.promoted and held.held_back == HELD_BACK_BY_MARGIN
    assert decide({"hybrid": 0.73}, 0.74, MARGIN, paired_wins=sure).promoted  # 1.4 % better


def test_gate_needs_the_paired_bootstrap():
    held = decide({"hybrid": 0.70}, 0.74, MARGIN, paired_wins={"hybrid": 0.85})
    assert not held.promoted and held.held_back == HELD_BACK_BY_BOOTSTRAP
    assert "only 85% of the paired resamples" in held.reason
    assert not decide({"hybrid": 0.70}, 0.74, MARGIN).promoted  # no bootstrap, no promotion
    strict = CompareConfig(margin=0.01, min_paired_wins=0.95)
    assert not decide({"hybrid": 0.70}, 0.74, strict, paired_wins={"hybrid": 0.93}).promoted


def _noisy_night(seed: int, challenger_noise_s: float) -> tuple[np.ndarray, ...]:
    """Six validation subjects; the champion's error is noise of 0.3 s per window, the
    challenger's ``challenger_noise_s``, both around the same subject-level bias."""
    rng = np.random.default_rng(seed)
    subjects = np.repeat([f"S{i}" for i in range(6)], 40)
    y = 1.5 + rng.normal(0, 0.4, len(subjects))
    bias = np.repeat(rng.normal(0, 0.2, 6), 40)
    champion = y + bias + rng.normal(0, 0.3, len(y))
    challenger = y + bias + rng.normal(0, challenger_noise_s, len(y))
    return subjects, y, champion, challenger


def test_a_challenger_better_by_noise_only_is_held_back():
    cfg = CompareConfig()
    held_back = 0
    for seed in range(40):
        subjects, y, champion, challenger = _noisy_night(seed, 0.3)  # the same model, twice
        score, champion_score = nrmse(y, challenger), nrmse(y, champion)
        if score >= champion_score * (1 - cfg.margin):
            continue  # the margin alone holds it back
        boot = subject_bootstrap(y, {"hybrid": challenger, "champion": champion}, subjects,
                                 cfg.bootstrap_resamples)
        wins = float(np.mean(boot["hybrid"] < boot["champion"]))
        decision = decide({"hybrid": score}, champion_score, cfg, paired_wins={"hybrid": wins})
        assert decision.promoted == (wins >= cfg.min_paired_wins)
        held_back += decision.held_back == HELD_BACK_BY_BOOTSTRAP
    assert held_back >= 5  # noise often clears the margin; the bootstrap catches it
    subjects, y, champion, challenger = _noisy_night(0, 0.1)  # really better
    boot = subject_bootstrap(y, {"hybrid": challenger, "champion": champion}, subjects,
                             cfg.bootstrap_resamples)
    wins = float(np.mean(boot["hybrid"] < boot["champion"]))
    assert decide({"hybrid": nrmse(y, challenger)}, nrmse(y, champion), cfg,
                  paired_wins={"hybrid": wins}).promoted


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


# A hand-written submission: RT = 1 s + 1e4 x the window's mean, and a Challenge 2 model
# that is given by the test.
_HANDMADE = """
import torch

class _Mean(torch.nn.Module):
    def forward(self, x):
        return 1.0 + 1e4 * x.mean(dim=(1, 2)).unsqueeze(1)

class Submission:
    def __init__(self, SFREQ, DEVICE):
        pass

    def get_model_challenge_1(self):
        return _Mean().eval()

    def get_model_challenge_2(self):
        CHALLENGE_2
"""


def _handmade(tmp_path, challenge_2):
    sub = tmp_path / "handmade"
    sub.mkdir()
    (sub / SUBMISSION_FILE).write_text(_HANDMADE.replace("CHALLENGE_2", challenge_2))
    windows = np.random.default_rng(1).normal(0, 1e-5, (6, 129, 200)).astype(np.float32)
    return sub, windows, 1.0 + 1e4 * windows.astype(np.float64).mean(axis=(1, 2))


def test_fresh_process_check_feeds_the_probes(tmp_path):
    sub, windows, expected = _handmade(tmp_path, "return _Mean().eval()")
    with pytest.raises(RuntimeError, match=r"probe 'white noise \(microvolts\)'.*0.2..3.0 s"):
        check_in_fresh_process(sub, windows, expected, 100.0)
    probes = probe_windows(windows)
    assert set(probes) == {"white noise (volts)", "white noise (microvolts)",
                           "one NaN channel", "one flat channel", "all-zero windows"}
    assert np.isnan(probes["one NaN channel"][:, index_of("CPz")]).all()
    assert all(p.shape == (8, 129, 200) and p.dtype == np.float32 for p in probes.values())


def test_fresh_process_check_calls_challenge_2(tmp_path):
    sub, windows, expected = _handmade(tmp_path, "raise NotImplementedError('only 1')")
    with pytest.raises(RuntimeError, match="NotImplementedError: only 1"):
        check_in_fresh_process(sub, windows, expected, 100.0)


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
                                submission, tmp_path / "c1.json", MARGIN)
    names = {r["name"] for r in first["rows"]}
    assert {"baseline", "hybrid", "mean predictor"} <= names
    assert first["decision"]["promoted"]
    champion = read_champion(submission)
    assert champion["model"] == first["decision"]["model"]
    for name, digest in champion["files"].items():
        assert atomic.sha256_file(submission / name) == digest
    before = {p.name: p.read_bytes() for p in submission.iterdir() if p.is_file()}

    second = compare_and_promote(tiny_night.models, tiny_night.windows, tiny_night.split,
                                 submission, tmp_path / "c2.json", MARGIN)
    assert not second["decision"]["promoted"]
    champion_row = next(r for r in second["rows"] if r["kind"] == "champion")
    best = min(r["nrmse"] for r in second["rows"] if r["kind"] == "model")
    assert champion_row["nrmse"] == pytest.approx(best, abs=1e-6)
    after = {p.name: p.read_bytes() for p in submission.iterdir() if p.is_file()}
    assert after == before
    saved = json.loads((tmp_path / "c2.json").read_text())
    assert len(saved["validation"]["y_true"]) == saved["split"]["n_val_windows"]


def test_compare_asks_whether_the_features_help(tiny_night, tmp_path):
    result = compare_and_promote(tiny_night.models, tiny_night.windows, tiny_night.split,
                                 tmp_path / "submission", tmp_path / "c.json", MARGIN,
                                 features_path=tiny_night.features)
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["baseline"]["inputs"] == ["eeg"]
    assert rows["hybrid"]["inputs"] == ["eeg", "features"]
    meta = json.loads((tiny_night.models / "hybrid" / "model.json").read_text())
    assert rows["hybrid"]["tune_nrmse"] == meta["best_tune_nrmse"]
    question = result["features"]["question"]
    assert (question["feature_model"], question["eeg_model"]) == ("hybrid", "baseline")
    assert question["feature_nrmse"] == rows["hybrid"]["nrmse"]
    assert 0.0 <= question["paired_wins"] <= 1.0
    importance = result["features"]["importance"]
    assert set(importance) == {"hybrid"}  # the baseline reads no features
    assert set(importance["hybrid"]) == {"CPP", "P3", "beta", "mu", "alpha", "motor"}
    for family in importance["hybrid"].values():
        low, high = family["interval"]
        assert math.isfinite(family["delta_nrmse"]) and low <= high
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["features"]["families"]["P3"] == ["p3_amp_v"]
    # made in the scoring pass, the importance is what a pass of its own gives
    val = _val(tiny_night)
    features, names = read_features(tiny_night.features, val.index)
    columns = {family: [names.index(n) for n in members]
               for family, members in FEATURE_FAMILIES.items()}
    cfg = MARGIN
    direct = permutation_importance(
        load_trained_model(tiny_night.models / "hybrid")[0], val.eeg, features, val.rt,
        val.subject, columns, cfg.bootstrap_resamples, cfg.interval_level,
        cfg.importance_repeats, cfg.bootstrap_seed)
    for family, value in direct.items():
        assert importance["hybrid"][family]["delta_nrmse"] == pytest.approx(
            value["delta_nrmse"], abs=1e-9)
        assert importance["hybrid"][family]["interval"] == pytest.approx(value["interval"],
                                                                          abs=1e-9)


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


def test_an_ensemble_ships_as_one_submission(tiny_night, tmp_path):
    base = tiny_night.models / "baseline"
    meta = json.loads((base / "model.json").read_text())
    state = torch.load(base / "model.pt", weights_only=True)
    ensemble_dir = tmp_path / "ensemble"
    ensemble_dir.mkdir()
    torch.save({f"members.{k}.{name}": value for k in range(2) for name, value in state.items()},
               ensemble_dir / "model.pt")
    (ensemble_dir / "model.json").write_text(json.dumps(
        {**meta, "model_args": {**meta["model_args"], "ensemble": 2}}))
    files = build_submission(ensemble_dir, tmp_path / "sub")
    assert sum(name.startswith("weights_") for name in files) == 1
    val = _val(tiny_night)
    model, _ = load_trained_model(ensemble_dir)
    single, _ = load_trained_model(base)
    expected = predict(model, val.eeg)
    np.testing.assert_allclose(expected, predict(single, val.eeg), rtol=1e-5)  # two copies
    check_in_fresh_process(tmp_path / "sub", val.eeg, expected, val.sfreq_hz)


def test_the_speed_limit_keeps_slow_models_back_unless_it_is_off():
    from overnight.champion.compare import _too_slow

    rows = [{"name": "quick", "kind": "model",
             "ms_per_window": {"cpu_1_thread": 3.0, "cpu_default_threads": 2.0}},
            {"name": "slow", "kind": "model",
             "ms_per_window": {"cpu_1_thread": 30.0, "cpu_default_threads": 45.0}}]
    assert _too_slow(rows, CompareConfig(max_ms_per_window=20.0)) == {"slow": 45.0}
    assert _too_slow(rows, CompareConfig(max_ms_per_window=0.0)) == {}
    with pytest.raises(ValueError, match="max_ms_per_window"):
        CompareConfig(max_ms_per_window=-1.0)
