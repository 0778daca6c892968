"""The report's feature section: does the best feature model beat the best raw-EEG model,
which feature families the models use, and the error by response-time bin."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from overnight.report.context import build_report_context
from overnight.report.render import render_report

from .test_report import DATE, ENVIRONMENT, PNG_SRC, _make_work_dir

YES = ("Yes: hybrid (reads eeg + features) 0.690 beats baseline (reads eeg) 0.710 in 95 % "
       "of the paired resamples of the validation subjects (90 % needed).")


def _edit(work: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite the night's comparison.json through ``change``."""
    path = work / "comparison.json"
    comparison = json.loads(path.read_text())
    change(comparison)
    path.write_text(json.dumps(comparison))


def _night(work: Path, tmp_path: Path) -> tuple[dict[str, Any], str]:
    context = build_report_context(work, None, ENVIRONMENT)
    html = render_report(context, tmp_path / "reports", DATE).read_text(encoding="utf-8")
    return context, html


def _section(html: str) -> str:
    """The page from the feature section's heading to the next section's."""
    start = html.index("<h2>Do the features help?</h2>")
    return html[start:html.index("<h2>", start + 1)]


def _row(comparison: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in comparison["rows"] if r["name"] == name)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return _make_work_dir(tmp_path)


def test_yes_when_the_feature_model_wins_enough_paired_resamples(work, tmp_path):
    context, html = _night(work, tmp_path)

    assert context["question"] == {"note": None, "verdict": "yes", "sentence": YES}
    assert f'<p class="answer yes">{YES}</p>' in _section(html)


@pytest.mark.parametrize(("question", "min_paired_wins", "verdict", "sentence"), [
    ({"paired_wins": 0.953}, 0.96, "unclear",
     "Not clearly: hybrid (reads eeg + features) 0.690 is lower than baseline (reads eeg) "
     "0.710, but only in 95 % of the paired resamples of the validation subjects (96 % "
     "needed): the gain may be noise."),
    # a share just under the threshold must not be rounded up to it
    ({"paired_wins": 0.899}, 0.9, "unclear", "but only in 89 % of the paired"),
    # 0.29 * 100 is 28.999... in floats: still 29 %
    ({"feature_nrmse": 0.75, "paired_wins": 0.29}, 0.9, "no",
     "No: hybrid (reads eeg + features) 0.750 does not beat baseline (reads eeg) 0.710; it is "
     "lower in only 29 % of the paired resamples of the validation subjects."),
])
def test_no_or_not_clearly_by_the_gates_threshold(work, tmp_path, question, min_paired_wins,
                                                   verdict, sentence):
    def change(comparison: dict[str, Any]) -> None:
        comparison["features"]["question"].update(question)
        comparison["bootstrap"]["min_paired_wins"] = min_paired_wins
    _edit(work, change)
    context, html = _night(work, tmp_path)

    assert context["question"]["verdict"] == verdict
    assert sentence in context["question"]["sentence"]
    assert f'<p class="answer {verdict}">' in html


@pytest.mark.parametrize(("unscored", "why"), [
    ("hybrid", "no model that reads the features has a validation score tonight"),
    ("baseline", "no model that reads only the raw EEG window has a validation score tonight"),
])
def test_not_answered_says_why(work, tmp_path, unscored, why):
    def change(comparison: dict[str, Any]) -> None:
        comparison["features"]["question"] = None
        _row(comparison, unscored).update(nrmse=None)
    _edit(work, change)
    context, html = _night(work, tmp_path)

    assert context["question"] == {"note": why}
    assert f'<p class="answer unanswered">Not answered: {why}</p>' in html


def test_importance_table_and_plot(work, tmp_path):
    def change(comparison: dict[str, Any]) -> None:
        hybrid = comparison["features"]["importance"]["hybrid"]
        hybrid["mu"] = {"delta_nrmse": 0.0006, "interval": [0.0002, 0.0011]}
        hybrid["alpha"] = {"delta_nrmse": -0.0002, "interval": [-0.0004, 0.0001]}
    _edit(work, change)
    context, html = _night(work, tmp_path)
    importance = context["importance"]

    assert importance["note"] is None and importance["warnings"] == []
    assert [r["family"] for r in importance["rows"]] == ["CPP", "P3", "beta", "mu", "alpha",
                                                         "motor"]
    assert importance["rows"][0]["cells"]["hybrid"] == {
        "delta": 0.041, "interval": [0.02, 0.063], "above_zero": True}
    section = _section(html)
    # CPP's interval lies above 0 (green), P3's reaches below it
    assert re.search(r'<td>CPP</td>\s*<td class="features"><code>cpp_mean_v, cpp_peak_v, '
                     r'cpp_peak_latency_s, cpp_slope_v_per_s</code></td>\s*'
                     r'<td class="num better">\+0.041\s*<div class="muted small">\(0.020 to '
                     r'0.063\)</div>', section)
    assert re.search(r'<td>P3</td>.*?<td class="num">\+0.004\s*<div class="muted small">'
                     r'\(-0.011 to 0.019\)</div>', section, re.S)
    # above zero, but not at the three decimals shown: not marked as used; no "-0.000"
    assert re.search(r'<td>mu</td>.*?<td class="num">\+0.001\s*<div class="muted small">'
                     r'\(0.000 to 0.001\)</div>', section, re.S)
    assert re.search(r'<td>alpha</td>.*?<td class="num">\+0.000\s*<div class="muted small">'
                     r'\(0.000 to 0.000\)</div>', section, re.S)
    assert "-0.000" not in section
    assert "the mean of 3 shuffles" in section and "90 % interval" in section
    plot = re.search(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" class="plot" '
                     r'alt="permutation importance', section)
    assert base64.b64decode(plot.group(1)).startswith(b"\x89PNG")


def test_error_by_rt_bin_shows_a_model_blind_to_fast_presses(work, tmp_path):
    # 10 presses before the window opens and 30 inside it; "press" answers 1.0 s for all
    y_true = [0.3] * 10 + [1.2] * 30
    subjects = ["NDARAA111AAA"] * 20 + ["NDARBB222BBB"] * 20
    predictions = {"press": [1.0] * 40, "baseline": [t + 0.1 for t in y_true]}
    _edit(work, lambda c: c.update(validation={"subject": subjects, "y_true": y_true,
                                               "predictions": predictions}))
    context, html = _night(work, tmp_path)
    bins = context["rt_bins"]

    assert bins["models"] == ["press", "baseline"]
    assert [(b["label"], b["n_windows"]) for b in bins["rows"]] == [("< 0.5 s", 10),
                                                                    ("1-1.5 s", 30)]
    assert bins["rows"][0]["bias"]["press"] == pytest.approx(0.7)
    assert bins["rows"][1]["rmse"]["press"] == pytest.approx(0.2)
    section = _section(html)
    assert re.search(r'<td>&lt; 0.5 s</td><td class="num">10</td>\s*<td class="num">0.700'
                     r'<div class="muted small">bias \+0.700</div></td>', section)
    assert "come before the window\n  opens, 0.5 s after the stimulus" in section
    assert 'alt="RMSE and bias of every model per bin' in section


def _drop_features(comparison: dict[str, Any]) -> None:
    del comparison["features"]


def _drop_inputs(comparison: dict[str, Any]) -> None:
    comparison["features"]["question"] = None
    for row in comparison["rows"]:
        row.pop("inputs", None)


def _unknown_family(comparison: dict[str, Any]) -> None:
    comparison["features"]["importance"]["hybrid"]["<b>gamma$x^{$"] = {
        "delta_nrmse": 0.01, "interval": [0.0, 0.02]}


def _null_numbers(comparison: dict[str, Any]) -> None:
    comparison["features"]["question"]["paired_wins"] = None
    comparison["features"]["importance"]["hybrid"]["CPP"] = {"delta_nrmse": None,
                                                             "interval": [None, 0.1]}
    n = len(comparison["validation"]["y_true"])
    comparison["validation"]["predictions"]["baseline"] = [None] * n


def _malformed_importance(comparison: dict[str, Any]) -> None:
    comparison["features"]["importance"] = {"hybrid": 3, "gbm": {"CPP": "high"}}
    comparison["features"]["families"] = ["CPP"]


def _no_feature_cache(comparison: dict[str, Any]) -> None:
    comparison["features"].update(importance={}, note="no feature cache given: no "
                                                      "permutation importance")


def _question_a_string(comparison: dict[str, Any]) -> None:
    comparison["features"] = {"question": "yes", "importance": []}


@pytest.mark.parametrize(("change", "notes"), [
    (_drop_features, ["Not answered: comparison.json has no &#39;features&#39; object",
                      "not available: comparison.json has no &#39;features&#39; object"]),
    (_drop_inputs, ['</td>\n    <td>—</td>\n    <td class="num">0.652</td>',
                    "Not answered: the comparison&#39;s rows do not say what each model reads"]),
    (_unknown_family, ["hybrid: importance for family &#39;&lt;b&gt;gamma$x^{$&#39;, which is "
                       "not among the feature families",
                       '<td>&lt;b&gt;gamma$x^{$</td>\n    <td class="features"><span class="bad '
                       'small">not a known family</span>']),
    (_null_numbers, ["Not answered: features.question or the bootstrap settings lack",
                     '<td class="num">—</td>', '<span class="bad">NaN/failed</span><div '
                                               'class="muted small">bias —</div>']),
    (_malformed_importance, ["hybrid: its importance is not an object",
                             "gbm: importance for family &#39;CPP&#39;, which is not among"]),
    (_no_feature_cache, ["not available: no feature cache given: no permutation importance"]),
    (_question_a_string, ["Not answered: could not be built (ValueError: features.question "
                          "is a str, not an object)",
                          "not available: could not be built (ValueError: "
                          "features.importance is a list, not an object)"]),
])
def test_degraded_input_gives_a_note_not_a_crash(work, tmp_path, change, notes):
    _edit(work, change)
    _, html = _night(work, tmp_path)

    for note in notes:
        assert note in html
    assert "<b>gamma" not in html
    assert '<header class="banner promoted">' in html  # the rest of the night is intact
    assert "Error by response time" in _section(html)
    assert PNG_SRC.search(html)
