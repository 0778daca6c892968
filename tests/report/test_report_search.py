"""The report's search section: from the summary the search stage writes (a real study of
quick trials, its importances Optuna's), from a search that was off, and from a missing or
malformed summary, which costs the section only."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import optuna
import pytest

from overnight.atomic import write_json
from overnight.config import Config
from overnight.layout import NightFolder
from overnight.report.context import build_report_context
from overnight.report.render import render_report
from overnight.search import space, stage
from overnight.search.study import StudyPlace, open_study, reap_dead_trials

DATE = "2026-11-27"
HOSTILE = "<img src=x onerror=alert(3)>"


def _score(trial: optuna.trial.Trial) -> float:
    """A made-up tune NRMSE with a clear optimum in lr, pruned when it starts badly."""
    values = space.suggest(trial, margin_s=0.5, families=("baseline", "hybrid", "timing"))
    score = 0.8 + 0.1 * abs(math.log10(values["lr"] / 5e-4)) + 0.01 * values["dropout"]
    trial.report(score + 0.05, 1)
    if trial.should_prune():
        raise optuna.TrialPruned()
    return score


def _summary(tmp_path: Path) -> dict:
    config = Config()
    place = StudyPlace("rt-report", tmp_path / "studies" / "rt-report")
    started = time.time()
    study = open_study(place, config.search, seed=1)
    study.optimize(_score, n_trials=14)
    failing = study.ask()
    failing.set_user_attr("error", "RuntimeError: no epoch gave a finite tune NRMSE")
    study.tell(failing, state=optuna.trial.TrialState.FAIL)
    study.ask().suggest_float("lr", 1e-4, 3e-3, log=True)  # its worker died
    reaped = reap_dead_trials(study, place, "its worker was gone " + HOSTILE)
    model = {"trial": stage.best_trial(study).number, "how": "copied from its folder"}
    return stage.build_summary(study, place, config, started, started + 3600, reaped, model,
                               [])


def _render(work: Path, tmp_path: Path, rows: list | None = None) -> str:
    if rows is not None:
        (work / "comparison.json").write_text(json.dumps({"rows": rows}))
    context = build_report_context(work, None, {"python": "3.11"})
    return render_report(context, tmp_path / "reports", DATE).read_text()


def test_the_section_shows_the_trials_importances_and_best_values(tmp_path):
    summary = _summary(tmp_path)
    work = tmp_path / "night"
    write_json(NightFolder(work).search_summary, summary)
    rows = [{"name": "search", "kind": "model", "model": "hybrid", "nrmse": 0.812}]
    html = _render(work, tmp_path, rows)
    section = html[html.index("<h2>Hyperparameter search</h2>"):]
    section = section[:section.index("<h2>", 5)]
    counts = summary["counts"]
    assert counts["interrupted"] == 1 and counts["failed"] == 1 and counts["waiting"] == 1
    assert counts["complete"] + counts["pruned"] == 14
    header = "".join(f'<th class="num">{s}</th>' for s in ("complete", "pruned", "failed",
                                                            "interrupted", "running",
                                                            "waiting"))
    assert header in section
    assert section.count('<img src="data:image/png;base64,') == 1  # trials over time
    best = summary["best"]
    assert f"Trial {best['number']}: tune NRMSE {best['tune_nrmse']:.4f}" in section
    assert "validation NRMSE\n  0.812 in compare" in section
    for name in best["params"]:
        assert f"<td><code>{name}</code></td>" in section
    assert "<td>0.001</td>" in section  # the night's lr beside the best one
    assert summary["importances"]["values"]
    for name in summary["importances"]["values"]:
        assert f"<td><code>{name}</code></td><td class=\"num\">" in section
    assert "RuntimeError: no epoch gave a finite tune NRMSE" in section
    assert "night's own best" not in section  # no night row has a tune score
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(3)&gt;" in section


def test_an_off_search_says_why_and_a_missing_or_bad_summary_costs_only_the_section(
        tmp_path):
    work = tmp_path / "night"
    work.mkdir()
    assert "no search stage ran" in _render(work, tmp_path)
    folder = NightFolder(work)
    write_json(folder.search_summary, {"off": "off: [search] budget_min = 0"})
    assert "the search was off: [search] budget_min = 0" in _render(work, tmp_path)
    folder.search_summary.write_text("[1, 2")
    html = _render(work, tmp_path)
    assert "<h2>Hyperparameter search</h2>" in html and "could not be built" in html
    assert "<h2>Environment</h2>" in html


@pytest.mark.parametrize("trials", [[], [{"number": 0, "state": "running", "value": None}]])
def test_a_search_with_no_finished_trial_renders(tmp_path, trials):
    work = tmp_path / "night"
    write_json(NightFolder(work).search_summary, {
        "off": None, "study": "rt-x", "storage": "journal x", "started": "2026-11-27T00:00:00",
        "end": "2026-11-27T06:00:00", "ended": "2026-11-27T06:01:00", "budget_min": 360,
        "counts": {"running": len(trials)}, "trials": trials, "best": None,
        "importances": {"note": "0 complete trial(s): importances need at least two"},
        "model": {"trial": None, "why": "no trial has finished yet"}})
    html = _render(work, tmp_path)
    assert "no trial has finished yet" in html and "importances need at least two" in html


def test_the_best_trial_is_set_beside_the_nights_own_best_on_tune(tmp_path):
    summary = _summary(tmp_path)
    work = tmp_path / "night"
    write_json(NightFolder(work).search_summary, summary)
    best = summary["best"]["tune_nrmse"]
    rows = [{"name": "search", "kind": "model", "nrmse": 0.812, "tune_nrmse": best},
            {"name": "baseline", "kind": "model", "nrmse": 0.7, "tune_nrmse": best - 0.1},
            {"name": "hybrid", "kind": "model", "nrmse": 0.9, "tune_nrmse": best + 0.1}]
    section = _render(work, tmp_path, rows)
    section = section[section.index("<h2>Hyperparameter search</h2>"):]
    assert f"<strong>baseline</strong>, tune NRMSE {best - 0.1:.4f}" in section
    assert "no trial has beaten the\n  night's settings yet" in section
