"""The morning report, rendered from a fake work folder built in tmp_path."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from overnight.features.spec import FEATURE_FAMILIES
from overnight.report.context import CONTEXT_KEYS, build_report_context
from overnight.report.render import render_report

DATE = "2026-11-26"
HOSTILE_SUBJECT = "<script>alert(1)</script>"
HOSTILE_REASON = "<img src=x onerror=alert(2)> fewer than 129 channels"
MATHTEXT_SUBJECT = r"NDAR$\undefinedcommand{$"  # would crash matplotlib if parsed as math
REASON = "hybrid NRMSE 0.690 beats champion 0.740 by 6.8 % (margin 1.0 %)"
ENVIRONMENT = {"python": "3.11.7", "torch": "2.13.0", "numpy": "2.4.6", "numba": "0.68.1",
               "h5py": "3.16.0", "device": "CPU (x86_64, 2 threads)", "host": "testhost",
               "code_version": "abc123def456"}
SUBJECTS = ["NDARAA111AAA", "NDARBB222BBB", HOSTILE_SUBJECT, MATHTEXT_SUBJECT]
WINDOWS_PER_SUBJECT = 20
STAGES = ("synth", "windows", "features", "train-baseline", "train-hybrid", "compare")
PNG_SRC = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _comparison() -> dict[str, Any]:
    """Three models scored on 80 windows; subject k's error is 0.1 * (k + 1) s for baseline."""
    rng = np.random.default_rng(0)
    subject = np.repeat(SUBJECTS, WINDOWS_PER_SUBJECT)
    y_true = rng.normal(1.6, 0.4, subject.size)
    offset = 0.1 * (np.repeat(np.arange(len(SUBJECTS)), WINDOWS_PER_SUBJECT) + 1)
    predictions = {"baseline": y_true + offset,
                   "hybrid": 0.7 * y_true + 0.48 + rng.normal(0, 0.2, subject.size),
                   "champion": 0.6 * y_true + 0.64 + rng.normal(0, 0.25, subject.size)}
    model = {"epochs": 14, "best_epoch": 9, "n_params": 52113, "train_seconds": 41.2}
    # hybrid's permutation importance: the motor and CPP families help, the rest do not
    importance = {family: {"delta_nrmse": 0.004, "interval": [-0.011, 0.019]}
                  for family in FEATURE_FAMILIES}
    importance["CPP"] = {"delta_nrmse": 0.041, "interval": [0.02, 0.063]}
    importance["motor"] = {"delta_nrmse": 0.118, "interval": [0.081, 0.157]}
    return {
        "created": "2026-11-26T05:02:11", "code_version": "abc123", "margin": 0.01,
        "bootstrap": {"resamples": 1000, "seed": 0, "interval_level": 0.9,
                      "min_paired_wins": 0.9},
        "split": {"n_train_subjects": 24, "n_val_subjects": 4, "n_val_windows": subject.size},
        "rows": [
            {"name": "baseline", "kind": "model", "inputs": ["eeg"], "nrmse": 0.71,
             "tune_nrmse": 0.652, "rmse_s": 0.29, "delta_vs_champion": -0.0405, **model},
            {"name": "hybrid", "kind": "model", "inputs": ["eeg", "features"], "nrmse": 0.69,
             "tune_nrmse": 0.633, "rmse_s": 0.28, "delta_vs_champion": -0.0676,
             "nrmse_interval": [0.65, 0.73], "paired_wins": 0.953, **model},
            {"name": "champion", "kind": "champion", "model": "baseline",
             "since": "2026-11-20", "nrmse": 0.74, "rmse_s": 0.30},
            {"name": "mean predictor", "kind": "reference", "nrmse": 1.003, "rmse_s": 0.41},
        ],
        "decision": {"promoted": True, "model": "hybrid", "reason": REASON,
                     "previous": {"model": "baseline", "nrmse": 0.74}},
        "features": {
            "question": {"feature_model": "hybrid", "feature_nrmse": 0.69,
                         "eeg_model": "baseline", "eeg_nrmse": 0.71, "paired_wins": 0.953},
            "families": {family: list(names) for family, names in FEATURE_FAMILIES.items()},
            "repeats": 3, "importance": {"hybrid": importance}},
        "validation": {"subject": subject.tolist(), "y_true": y_true.tolist(),
                       "predictions": {k: v.tolist() for k, v in predictions.items()}},
    }


def _write_model(models_dir: Path, name: str, n_epochs: int) -> None:
    folder = models_dir / name
    folder.mkdir(parents=True)
    lines = [json.dumps({"epoch": e, "train_loss": 1.0 / e, "tune_nrmse": 0.7 + 0.2 / e
                         + 0.002 * (e - n_epochs + 4) ** 2,
                         "lr": 1e-3, "seconds": 2.0}) for e in range(1, n_epochs + 1)]
    # a crash mid-write leaves a truncated last line, which the report must skip
    (folder / "history.jsonl").write_text("\n".join(lines) + '\n{"epoch": 99, "train_lo')
    (folder / "model.json").write_text(json.dumps({
        "model": name, "inputs": ["eeg", "features"] if name == "hybrid" else ["eeg"],
        "n_params": 52113, "best_epoch": n_epochs, "best_tune_nrmse": 0.72,
        "epochs_run": n_epochs, "train_seconds": 41.2, "device": "cpu", "config": {}}))


def _write_status(status_dir: Path, stage: str, minute: int, status: str = "ok",
                  reused: bool = False) -> None:
    status_dir.mkdir(parents=True, exist_ok=True)
    (status_dir / f"{stage}.json").write_text(json.dumps({
        "stage": stage, "status": status, "start": f"2026-11-26T02:{minute:02d}:00",
        "end": f"2026-11-26T02:{minute + 3:02d}:00", "seconds": 180.0,
        "exit_code": 0 if status == "ok" else 1, "log": f"logs/{stage}.log", "reused": reused}))


def _make_work_dir(root: Path) -> Path:
    """A complete night: comparison, two trained models, every stage ok (features reused)."""
    work = root / "work"
    work.mkdir()
    (work / "comparison.json").write_text(json.dumps(_comparison()))
    _write_model(work / "models", "baseline", n_epochs=14)
    _write_model(work / "models", "hybrid", n_epochs=10)
    for i, stage in enumerate(STAGES):
        _write_status(work / "status", stage, minute=3 * i, reused=stage == "features")
    return work


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return _make_work_dir(tmp_path)


def _cache_summary() -> dict[str, Any]:
    return {"n_windows": 2400, "n_subjects": 30, "n_recordings": 89,
            "skipped": [{"path": "sub-NDARXX/eeg/run-1_eeg.set", "reason": HOSTILE_REASON}],
            "dropped_trials": {"no response": 12, "no stimulus": 3}, "rt_mean_s": 1.61,
            "rt_std_s": 0.41, "sfreq_hz": 100.0, "window_start_s": 0.5, "window_stop_s": 2.5,
            "bids_root": "/data/bids", "created": "2026-11-26T02:04:00", "code_version": "abc"}


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """The complete night rendered once (plots take about a second): context and report."""
    root = tmp_path_factory.mktemp("night")
    context = build_report_context(_make_work_dir(root), _cache_summary(), ENVIRONMENT,
                                   champion=CHAMPION)
    return context, render_report(context, root / "reports", DATE)


# The champion record after three promotions (champion.json), for the history section.
CHAMPION = {
    "model": "press-hybrid", "nrmse": 0.61, "nrmse_interval": [0.57, 0.66],
    "date": "2026-11-26", "n_val_windows": 475, "reason": "beats the champion by 4 %",
    "previous": [
        {"model": "hybrid", "nrmse": 0.64, "date": "2026-11-20", "n_val_windows": 475,
         "reason": "beats the champion by 3 %"},
        {"model": "baseline", "nrmse": 0.66, "date": "2026-11-18", "n_val_windows": 475,
         "reason": "no champion yet: baseline becomes champion"},
    ]}


def _render(work: Path, tmp_path: Path) -> str:
    context = build_report_context(work, None, ENVIRONMENT)
    path = render_report(context, tmp_path / "reports", DATE)
    return path.read_text(encoding="utf-8")


def _banner_class(html: str) -> str:
    return re.search(r'<header class="banner (\w+)">', html).group(1)


def test_renders_both_files_with_every_section(night):
    _, path = night

    assert path.name == f"{DATE}.html"
    assert (path.parent / "latest.html").read_bytes() == path.read_bytes()
    html = path.read_text(encoding="utf-8")
    assert _banner_class(html) == "promoted"
    assert "Promoted hybrid" in html and REASON in html
    assert "took 18 min 00 s" in html  # 02:00 to 02:18
    for name in ("baseline", "hybrid", "champion", "mean predictor"):
        assert f'<td class="name">{name}' in html
    for nrmse in ("0.710", "0.740", "1.003"):
        assert f'<td class="num">{nrmse}</td>' in html
    assert re.search(r'<td class="num">0.690\s*<div class="muted small">0.650–0.730</div>', html)
    assert re.search(r'<td>eeg \+ features</td>\s*<td class="num">0.633</td>', html)
    assert re.search(r'<td>eeg</td>\s*<td class="num">0.652</td>', html)
    assert "Tune NRMSE: on training subjects held out" in html
    assert "<td class=\"num\">95 %</td>" in html and "90 % interval from" in html
    assert "−6.8 %" in html and 'class="num better"' in html
    assert "9 / 14" in html and "52,113" in html
    assert "not available" not in html
    images = PNG_SRC.findall(html)
    # importance, RT bins, champion history, learning curves, scatter, subjects, timeline
    assert len(images) == 7
    for encoded in images:
        assert base64.b64decode(encoded).startswith(b"\x89PNG\r\n\x1a\n")
    assert "reused" in html and "abc123def456" in html and "no response" in html
    assert len(html.encode()) < 1_500_000


def test_per_subject_rmse_is_exact_and_worst_first(night):
    subjects = night[0]["subjects"]

    mean_rmse = [np.mean(list(r["rmse"].values())) for r in subjects["rows"]]
    assert mean_rmse == sorted(mean_rmse, reverse=True)
    assert subjects["models"] == ["baseline", "hybrid", "champion"]
    baseline = {r["subject"]: r["rmse"]["baseline"] for r in subjects["rows"]}
    for k, subject in enumerate(SUBJECTS):
        assert baseline[subject] == pytest.approx(0.1 * (k + 1))
    assert all(r["n_windows"] == WINDOWS_PER_SUBJECT for r in subjects["rows"])


def test_untrusted_text_is_escaped(night):
    html = night[1].read_text(encoding="utf-8")

    assert HOSTILE_SUBJECT not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(2)&gt; fewer than 129 channels" in html


def test_missing_comparison_gives_red_banner_and_training_numbers(work_dir, tmp_path):
    (work_dir / "comparison.json").unlink()
    html = _render(work_dir, tmp_path)

    assert _banner_class(html) == "failed"
    assert "comparison not available: comparison.json not found" in html
    assert "not available: comparison.json not found" in html  # scatter and subjects
    assert "tune NRMSE from training" in html
    # best_tune_nrmse of model.json in the tune column; no validation score is made up
    assert re.search(r'<td>eeg \+ features</td>\s*<td class="num">0.720</td>\s*'
                     r'<td class="num">—', html)
    assert "no model trained" not in html
    assert len(PNG_SRC.findall(html)) == 2  # learning curves and timeline remain


def test_missing_or_unreadable_histories_are_reported(work_dir, tmp_path):
    (work_dir / "models" / "hybrid" / "history.jsonl").write_bytes(b"\xff\xfe not text")
    html = _render(work_dir, tmp_path)
    assert "not available for hybrid: no history.jsonl" in html

    for name in ("baseline", "hybrid"):
        (work_dir / "models" / name / "history.jsonl").unlink(missing_ok=True)
    html = _render(work_dir, tmp_path)
    assert "not available: no training history" in html
    assert _banner_class(html) == "promoted"  # a missing plot is not a failed night


def test_an_ensemble_is_drawn_from_its_first_member(work_dir, tmp_path):
    folder = work_dir / "models" / "hybrid"
    (folder / "member-0").mkdir()
    (folder / "history.jsonl").rename(folder / "member-0" / "history.jsonl")
    html = _render(work_dir, tmp_path)
    assert "no history.jsonl" not in html


def test_empty_work_dir_still_renders(tmp_path):
    html = _render(tmp_path / "nothing here", tmp_path)

    assert _banner_class(html) == "failed"
    assert "No decision tonight" in html and "no model trained" in html
    assert html.count('class="na">not available:') >= 6
    assert "<img" not in html


@pytest.mark.parametrize("content", ["{not json", '{"rows": 3}', "[]"])
def test_malformed_comparison_is_not_available(work_dir, tmp_path, content):
    (work_dir / "comparison.json").write_text(content)
    html = _render(work_dir, tmp_path)

    assert _banner_class(html) == "failed"
    assert "comparison not available: comparison.json" in html


def test_bad_validation_block_costs_only_its_sections(work_dir, tmp_path):
    comparison = json.loads((work_dir / "comparison.json").read_text())
    comparison["validation"]["predictions"]["hybrid"] = [1.0, 2.0]
    (work_dir / "comparison.json").write_text(json.dumps(comparison))
    html = _render(work_dir, tmp_path)

    # scatter, subjects and RT bins
    assert html.count("not available: could not be built (ValueError: predictions[") == 3
    assert _banner_class(html) == "promoted"
    assert len(PNG_SRC.findall(html)) == 3  # curves, timeline, importance


def test_failed_stage_and_nan_scores_are_red(work_dir, tmp_path):
    _write_status(work_dir / "status", "train-hybrid", minute=12, status="failed")
    comparison = json.loads((work_dir / "comparison.json").read_text())
    comparison["rows"][1].update(nrmse=None, rmse_s=None, delta_vs_champion=None)
    n = len(comparison["validation"]["y_true"])
    comparison["validation"]["predictions"]["hybrid"] = [None] * n
    (work_dir / "comparison.json").write_text(json.dumps(comparison))
    html = _render(work_dir, tmp_path)

    assert _banner_class(html) == "failed"
    banner = html[html.index("<header"):html.index("</header>")]
    assert "train-hybrid" in banner and "logs/train-hybrid.log" in banner
    assert '<td class="status-failed">failed (exit 1)</td>' in html
    assert '<span class="bad">NaN/failed</span>' in html
    assert len(PNG_SRC.findall(html)) == 6  # a diverged model still gets its panels


def test_stage_left_running_is_a_problem_but_the_report_stage_is_not(work_dir, tmp_path):
    _write_status(work_dir / "status", "report", minute=18, status="running")
    html = _render(work_dir, tmp_path)
    assert _banner_class(html) == "promoted"
    assert '<td class="status-rendering">rendering' in html and 'this page</td>' in html
    assert ">running<" not in html

    _write_status(work_dir / "status", "compare", minute=15, status="running")
    html = _render(work_dir, tmp_path)
    assert _banner_class(html) == "failed"
    assert "stage compare is still marked running" in html


def test_kept_champion_is_blue(work_dir, tmp_path):
    comparison = json.loads((work_dir / "comparison.json").read_text())
    comparison["decision"] = {"promoted": False, "model": None,
                              "reason": "no challenger beats the champion by 1.0 %",
                              "previous": {"model": "baseline", "nrmse": 0.74}}
    (work_dir / "comparison.json").write_text(json.dumps(comparison))
    html = _render(work_dir, tmp_path)

    assert _banner_class(html) == "kept"
    assert "Champion kept: baseline" in html
    assert "Held back" not in html

    comparison["decision"]["held_back"] = "bootstrap"
    (work_dir / "comparison.json").write_text(json.dumps(comparison))
    assert "Held back by the paired bootstrap" in _render(work_dir, tmp_path)


def test_input_validation(work_dir, tmp_path):
    context = build_report_context(tmp_path / "empty", None, ENVIRONMENT)
    with pytest.raises(ValueError, match="date='2026-13-01'"):
        render_report(context, tmp_path, "2026-13-01")
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        render_report(context, tmp_path, "../../etc")
    with pytest.raises(TypeError, match="date must be a str"):
        render_report(context, tmp_path, 20261126)
    with pytest.raises(ValueError, match="lacks section"):
        render_report({"banner": {}}, tmp_path, DATE)
    with pytest.raises(TypeError, match="environment must be a dict"):
        build_report_context(work_dir, None, ["python"])
    with pytest.raises(TypeError, match="cache_summary must be a dict or None"):
        build_report_context(work_dir, "summary", ENVIRONMENT)
    assert set(context) == set(CONTEXT_KEYS)
    assert not list(tmp_path.glob("*.html"))


def test_job_writes_the_report_without_a_window_cache(work_dir, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "report_job", Path(__file__).resolve().parents[2] / "jobs" / "report.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    monkeypatch.setattr(job, "environment", lambda: ENVIRONMENT)

    code = job.main(["--work", str(work_dir), "--windows", str(tmp_path / "none.h5"),
                     "--reports", str(tmp_path / "reports"), "--date", DATE])

    assert code == 0
    html = (tmp_path / "reports" / "latest.html").read_text(encoding="utf-8")
    assert f"not available: window cache {tmp_path / 'none.h5'} not found" in html


def test_champion_history_shows_every_champion_newest_first(work_dir, tmp_path):
    context = build_report_context(work_dir, None, ENVIRONMENT, champion=CHAMPION)
    history = context["history"]
    assert [e["date"] for e in history["entries"]] == ["2026-11-26", "2026-11-20", "2026-11-18"]
    assert history["entries"][0]["interval"] == [0.57, 0.66]
    assert history["plot"].startswith("data:image/png;base64,")
    html = render_report(context, tmp_path / "reports", DATE).read_text(encoding="utf-8")
    assert "Champion history" in html and "no champion yet: baseline becomes champion" in html
    assert re.search(r"0.610\s*<div class=\"muted small\">0.570–0.660</div>", html)

    empty = build_report_context(work_dir, None, ENVIRONMENT)["history"]
    assert empty["note"].startswith("no champion yet")
    with pytest.raises(TypeError, match="champion must be a dict"):
        build_report_context(work_dir, None, ENVIRONMENT, champion=["x"])


def test_the_blend_row_shows_its_weights_and_what_it_left_out(work_dir, tmp_path):
    comparison = json.loads((work_dir / "comparison.json").read_text())
    comparison["rows"].insert(2, {"name": "blend", "kind": "model", "model": "blend",
                                  "inputs": ["eeg", "features"], "nrmse": 0.68,
                                  "tune_nrmse": 0.62, "rmse_s": 0.27,
                                  "blend_weights": {"hybrid": 0.64, "baseline": 0.36}})
    comparison["blend"] = {"written": True, "weights": {"hybrid": 0.64, "baseline": 0.36},
                           "left_out": {"eegnex": "not run"}}
    (work_dir / "comparison.json").write_text(json.dumps(comparison))
    html = _render(work_dir, tmp_path)
    assert "weights: hybrid 0.64, baseline 0.36" in html
    assert "fitted on the predictions of each model for the tune subjects" in html
    assert "eegnex: not run" in html

    comparison["rows"].pop(2)
    comparison["blend"] = {"written": False, "why": "off ([compare] blend = false)",
                           "left_out": {}}
    (work_dir / "comparison.json").write_text(json.dumps(comparison))
    assert "No blend tonight: off ([compare] blend = false)." in _render(work_dir, tmp_path)
