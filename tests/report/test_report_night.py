"""What the morning report adds for unattended nights: the preflight's error on top, every
model failed in red, the night folder."""

from __future__ import annotations

import json

from .test_report import _banner_class, _make_work_dir, _render, _write_status


def _banner(html: str) -> str:
    return html[html.index("<header"):html.index("</header>")]


def test_a_failed_preflight_heads_the_report_with_its_error(tmp_path):
    work = tmp_path / "runs" / "2026-01-02"
    _write_status(work / "status", "preflight", minute=0, status="failed")
    _write_status(work / "preflight" / "status", "windows", minute=0)
    _write_status(work / "preflight" / "status", "train-hybrid", minute=1, status="failed")
    status = json.loads((work / "preflight" / "status" / "train-hybrid.json").read_text())
    status["error"] = "TypeError: train_model() got an unexpected keyword argument 'epochs'"
    (work / "preflight" / "status" / "train-hybrid.json").write_text(json.dumps(status))
    html = _render(work, tmp_path)

    assert _banner_class(html) == "failed"
    banner = _banner(html)
    assert "Preflight failed: the night stopped before the long stages" in banner
    assert "champion is untouched" in banner
    assert banner.index("preflight job <strong>train-hybrid</strong>") < banner.index(
        "stage <strong>preflight</strong>")  # the job's own error comes first
    assert "unexpected keyword argument &#39;epochs&#39;" in banner
    assert "preflight/logs/train-hybrid.log" in banner
    assert f"night folder <code>{work}</code>" in banner


def test_every_model_failed_is_red_and_says_the_champion_stays(tmp_path):
    work = _make_work_dir(tmp_path)
    comparison = json.loads((work / "comparison.json").read_text())
    for row in comparison["rows"]:
        if row["kind"] == "model":
            row.update(nrmse=None, rmse_s=None, delta_vs_champion=None)
    comparison["decision"] = {"promoted": False, "model": None,
                              "reason": "no model produced a finite validation NRMSE "
                                        "(baseline, hybrid); the champion stays",
                              "previous": {"model": "baseline", "nrmse": 0.74}}
    (work / "comparison.json").write_text(json.dumps(comparison))
    html = _render(work, tmp_path)

    assert _banner_class(html) == "failed"
    assert "<h1>Every model failed: the champion stays (baseline)</h1>" in html


def test_training_failed_without_a_comparison_still_says_so(tmp_path):
    work = tmp_path / "night"
    for stage in ("train-baseline", "train-hybrid"):
        _write_status(work / "status", stage, minute=0, status="failed")
    html = _render(work, tmp_path)
    assert "<h1>Every model failed: the champion stays</h1>" in html


def test_a_good_night_names_no_failure(tmp_path):
    html = _render(_make_work_dir(tmp_path), tmp_path)
    assert "Preflight failed" not in html and "Every model failed" not in html
