"""What the morning report shows, gathered from a night folder.

``build_report_context`` reads what the night's stages left (``layout.NightFolder``: the
comparison, each model's history and ``model.json``, the stages' status records, and the
preflight's when it failed) together with the window-cache summary and the environment;
``overnight.report.render`` turns it into HTML.

Any input may be missing or malformed: that costs its section a visible
"not available: <why>" note, never the report. Text read from files is untrusted and
reaches the page only through Jinja2 autoescaping; plots are inlined as PNG ``data:`` URIs.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from overnight.atomic import read_json_lines
from overnight.champion.gate import HELD_BACK_BY_BOOTSTRAP, HELD_BACK_BY_MARGIN
from overnight.checks import as_path
from overnight.layout import (
    COMPARISON_FILE,
    DISK_STAGE,
    REPORT_STAGE,
    TRAIN_PREFIX,
    NightFolder,
)
from overnight.night import records
from overnight.report import plots
from overnight.report.search import search_section

log = logging.getLogger(__name__)

CONTEXT_KEYS = ("generated", "work_dir", "banner", "table", "question", "importance", "rt_bins",
                "history", "curves", "scatter", "subjects", "timeline", "data", "environment",
                "search")

_MAX_SUBJECT_ROWS = 15  # worst subjects listed in the table; the plot shows all
_ENV_ORDER = ("device", "code_version", "host", "python", "torch", "numpy", "numba", "h5py")


def build_report_context(work_dir: str | os.PathLike[str], cache_summary: dict | None,
                         environment: dict, *, cache_note: str | None = None,
                         champion: dict | None = None) -> dict[str, Any]:
    """Gather everything the morning report shows.

    Parameters
    ----------
    work_dir : str or path-like
        The night's folder (``layout.NightFolder``). Missing files become "not
        available" notes.
    cache_summary : dict or None
        ``overnight.windows.cache.cache_summary`` of the windows file; None when unavailable.
    environment : dict
        ``overnight.provenance.environment()``.
    cache_note : str, optional
        Why ``cache_summary`` is None, shown in the data section.
    champion : dict, optional
        The champion record (``champion.json``) with its history: the trend section.

    Returns
    -------
    dict
        One entry per section (keys ``CONTEXT_KEYS``); each section holds a ``note``
        that is None when the section is available. Plots are PNG ``data:`` URIs.

    Raises
    ------
    TypeError
        An argument of the wrong type.
    """
    work_dir = as_path(work_dir, "work_dir")
    if cache_summary is not None and not isinstance(cache_summary, dict):
        raise TypeError(f"cache_summary must be a dict or None, got {type(cache_summary).__name__}")
    if not isinstance(environment, dict):
        raise TypeError(f"environment must be a dict, got {type(environment).__name__}")
    if cache_note is not None and not isinstance(cache_note, str):
        raise TypeError(f"cache_note must be a str or None, got {type(cache_note).__name__}")
    if champion is not None and not isinstance(champion, dict):
        raise TypeError(f"champion must be a dict or None, got {type(champion).__name__}")

    folder = NightFolder(work_dir)
    comparison, comparison_note = _load_comparison(folder.comparison)
    runs = _load_runs(folder.models)
    stages = _load_stages(folder)
    preflight = [s for s in _load_stages(folder.preflight) if s["status"] in records.FAILURES]
    rows = _table_rows(comparison, runs)
    colors = plots.palette([r["name"] for r in rows if r["kind"] != "reference"] + sorted(runs))
    validation = comparison.get("validation") if comparison else None
    features, features_note = _features_block(comparison, comparison_note)
    bootstrap = _bootstrap(comparison.get("bootstrap") if comparison else None)
    timeline = _guarded("timeline", lambda: _timeline_section(stages))
    return {
        "generated": datetime.now().isoformat(timespec="seconds"),
        "work_dir": str(work_dir),
        "banner": _banner(comparison, comparison_note, rows, stages, timeline.get("total_s"),
                          preflight),
        "table": _guarded("table", lambda: _table_section(comparison, comparison_note, rows,
                                                          bootstrap)),
        "question": _guarded("question", lambda: _question_section(features, features_note,
                                                                   rows, bootstrap)),
        "importance": _guarded("importance", lambda: _importance_section(
            features, features_note, bootstrap, colors)),
        "rt_bins": _guarded("rt_bins", lambda: _rt_bins_section(validation, comparison_note,
                                                                 colors)),
        "history": _guarded("history", lambda: _history_section(champion)),
        "curves": _guarded("curves", lambda: _curves_section(runs, rows, colors)),
        "scatter": _guarded("scatter", lambda: _scatter_section(validation, comparison_note,
                                                                 rows, colors)),
        "subjects": _guarded("subjects", lambda: _subjects_section(validation, comparison_note,
                                                                   colors)),
        "timeline": timeline,
        "data": _guarded("data", lambda: _data_section(cache_summary, cache_note)),
        "environment": _environment_section(environment, comparison, cache_summary),
        "search": _guarded("search", lambda: search_section(
            folder, rows if comparison is not None else [])),
    }


# ---------------------------------------------------------------- reading the inputs


def _read_json(path: Path) -> tuple[Any, str | None]:
    """The parsed file, or None and why not."""
    if not path.is_file():
        return None, f"{path.name} not found in {path.parent}"
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{path.name} unreadable: {exc}"


def _load_comparison(path: Path) -> tuple[dict | None, str | None]:
    """The comparison when its shape is usable (a dict with a list of row dicts)."""
    comparison, note = _read_json(path)
    if comparison is None:
        return None, note
    rows = comparison.get("rows") if isinstance(comparison, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return None, f"{path.name} is malformed: expected an object with a list of 'rows'"
    for key in ("decision", "validation", "split"):
        if not isinstance(comparison.get(key), dict):
            comparison[key] = None
    return comparison, None


def _load_runs(models_dir: Path) -> dict[str, dict[str, Any]]:
    """Per model folder: its epoch history and model.json (None when absent)."""
    if not models_dir.is_dir():
        return {}
    runs = {}
    for folder in sorted(p for p in models_dir.iterdir() if p.is_dir()):
        meta, _ = _read_json(folder / "model.json")
        # an ensemble keeps one history per member: its first member's curve stands for it
        source = next((f / "history.jsonl" for f in (folder, folder / "member-0")
                       if (f / "history.jsonl").exists()), folder / "history.jsonl")
        try:
            history = [r for r in read_json_lines(source) if isinstance(r, dict)]
        except (OSError, UnicodeDecodeError):
            log.warning("unreadable history in %s", folder, exc_info=True)
            history = []
        runs[folder.name] = {"meta": meta if isinstance(meta, dict) else None,
                             "history": history}
    return runs


def _load_stages(folder: NightFolder) -> list[dict[str, Any]]:
    """One row per stage status record, in chain order, times parsed.

    The report stage is running while it renders this page: its row says so, not
    "running" (which would mean a stage left behind by a killed night).
    """
    stages = []
    for raw in records.stage_records(folder):
        start, end = _parse_time(raw.get("start")), _parse_time(raw.get("end"))
        seconds = _number(raw.get("seconds"))
        if seconds is None and start and end:
            seconds = (end - start).total_seconds()
        status, note = str(raw.get("status", "unknown")), raw.get("note")
        if raw["stage"] == REPORT_STAGE and status == records.RUNNING:
            status, note = "rendering", "this page"
        stages.append({"stage": str(raw["stage"]), "status": status, "start": start,
                       "end": end, "seconds": seconds, "exit_code": raw.get("exit_code"),
                       "log": raw.get("log"), "reused": raw.get("reused") is True,
                       "error": None if raw.get("error") is None else str(raw["error"]),
                       "note": None if note is None else str(note)})
    return stages


def _guarded(section: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Build one section; a malformed input costs that section, never the report."""
    try:
        return build()
    except Exception as exc:  # any bad value in any input file must not stop the report
        log.warning("report section %r not available", section, exc_info=True)
        return {"note": f"could not be built ({type(exc).__name__}: {exc})"}


# ---------------------------------------------------------------- sections


def _banner(comparison: dict | None, comparison_note: str | None, rows: list[dict[str, Any]],
            stages: list[dict[str, Any]], total_s: float | None,
            preflight: list[dict[str, Any]]) -> dict[str, Any]:
    """The decision, and everything that went wrong tonight (red when anything did).

    A failed preflight (``preflight`` lists its failed jobs) and a night where every model
    failed say so in the headline: in both, the champion was not touched.
    """
    problems = []
    models = [r for r in rows if r["kind"] == "model" and r["nrmse"] is not None]
    if comparison is None:
        problems.append(f"comparison not available: {comparison_note}")
    # without a comparison only the tune scores of training say whether a model trained
    tuned = comparison is None and any(r["tune_nrmse"] is not None for r in rows)
    if not models and not tuned:
        problems.append("no model trained: no model has a finite validation NRMSE")
    problems += [f"status/{s['stage']}.json unreadable: {s['note']}"
                 for s in stages if s["status"] == records.UNREADABLE]
    # the report stage renders this page as "rendering"; a stage still running was killed
    problems += [f"stage {s['stage']} is still marked running (killed, or still going?)"
                 for s in stages if s["status"] == records.RUNNING]
    failed = [s for s in stages if s["status"] in records.FAILURES]
    decision = comparison.get("decision") if comparison else None
    integrity = comparison.get("champion_integrity") if comparison else None
    headline, reason, promoted = _decision_text(decision)
    training_failed = any(s["stage"].startswith(TRAIN_PREFIX) for s in failed)
    if preflight:
        headline = "Preflight failed: the night stopped before the long stages"
        reason = ("No model was trained and the champion is untouched. Fix the job below and "
                  "rerun make overnight.")
    elif any(s["stage"] == DISK_STAGE for s in failed):
        headline = "Not enough disk space: the night stopped before the long stages"
        reason = ("No model was trained and the champion is untouched. The stage below says "
                  "how much the night would write where; free space and rerun make overnight.")
    elif isinstance(integrity, dict):
        headline = "The champion's files do not match champion.json: nothing was promoted"
        reason = (f"{integrity.get('problem')}: the night neither compared against these "
                  f"files nor replaced them. To mend: {integrity.get('fix')}.")
    elif not models and (comparison is not None or training_failed):
        headline = "Every model failed: the champion stays"
        previous = decision.get("previous") if decision else None
        if isinstance(previous, dict) and previous.get("model") is not None:
            headline += f" ({previous['model']})"
    state = "promoted" if promoted else "kept"
    if failed or problems or preflight or integrity:
        state = "failed"
    split = comparison.get("split") if comparison else None
    held_back = _HELD_BACK.get(str(decision.get("held_back"))) if decision else None
    return {"state": state, "headline": headline, "reason": reason, "failed": failed,
            "held_back": held_back,
            "preflight": preflight, "problems": problems, "total_s": total_s,
            "best": min(models, key=lambda r: r["nrmse"]) if models else None,
            "champion": _first(rows, "champion"), "mean": _first(rows, "reference"),
            "split": {key: _number(value) for key, value in (split or {}).items()}}


_HELD_BACK = {
    HELD_BACK_BY_MARGIN: "Held back by the margin: the best model is not better enough.",
    HELD_BACK_BY_BOOTSTRAP: "Held back by the paired bootstrap: the best model clears the "
                            "margin, but not on enough resamples of the validation subjects, "
                            "so its gain may be noise.",
}


def _decision_text(decision: dict | None) -> tuple[str, str | None, bool]:
    """Headline, reason and whether a model was promoted."""
    if decision is None:
        return "No decision tonight", None, False
    reason = decision.get("reason")
    reason = None if reason is None else str(reason)
    if decision.get("promoted") is True:
        return f"Promoted {decision.get('model')}", reason, True
    previous = decision.get("previous")
    if isinstance(previous, dict) and previous.get("model") is not None:
        return f"Champion kept: {previous['model']}", reason, False
    return "No model promoted", reason, False


def _first(rows: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    """The first row of a kind; for references, the mean predictor when present."""
    matches = [r for r in rows if r["kind"] == kind]
    if kind == "reference":
        matches = [r for r in matches if r["name"] == "mean predictor"] or matches
    return matches[0] if matches else None


def _table_rows(comparison: dict | None, runs: dict[str, dict[str, Any]]) -> list[dict]:
    """Rows of the model table: the comparison, or each model.json when it is missing (then
    with tune scores only: no validation subject was read)."""
    if comparison is not None:
        return [_model_row(raw) for raw in comparison["rows"]]
    return [_model_row({"name": name, "kind": "model", "not_run": meta.get("not_run"),
                        "tune_nrmse": meta.get("best_tune_nrmse"), "inputs": meta.get("inputs"),
                        "epochs": meta.get("epochs_run"), "best_epoch": meta.get("best_epoch"),
                        "n_params": meta.get("n_params"),
                        "train_seconds": meta.get("train_seconds")})
            for name, run in runs.items() if (meta := run["meta"]) is not None]


def _model_row(raw: dict[str, Any]) -> dict[str, Any]:
    """One comparison row with numbers as float or None (null or NaN = failed); ``error``
    says why a model or the champion could not be scored, ``reads`` what it reads."""
    inputs = raw.get("inputs")
    inputs = ([str(i) for i in inputs] if isinstance(inputs, list) and inputs else None)
    row = {"name": str(raw.get("name", "?")), "kind": str(raw.get("kind", "model")),
           "model": raw.get("model"), "since": raw.get("since"), "error": raw.get("error"),
           "not_run": None if raw.get("not_run") is None else str(raw["not_run"]),
           "inputs": inputs, "reads": None if inputs is None else " + ".join(inputs)}
    for key in ("nrmse", "tune_nrmse", "rmse_s", "delta_vs_champion", "epochs", "best_epoch",
                "n_params", "train_seconds", "paired_wins"):
        row[key] = _number(raw.get(key))
    row["interval"] = _interval(raw.get("nrmse_interval"))
    speed = raw.get("ms_per_window") if isinstance(raw.get("ms_per_window"), dict) else {}
    row["ms_one_thread"] = _number(speed.get("cpu_1_thread"))
    row["ms_default_threads"] = _number(speed.get("cpu_default_threads"))
    check = raw.get("scorer_check") if isinstance(raw.get("scorer_check"), dict) else None
    row["scorer_check"] = None if check is None else _scorer_check_text(check)
    weights = raw.get("blend_weights")
    row["blend_weights"] = (", ".join(f"{name} {_number(w) or 0.0:.2f}"
                                      for name, w in weights.items())
                            if isinstance(weights, dict) else None)
    return row


def _scorer_check_text(check: dict[str, Any]) -> str:
    """The promotion check of the promoted model, in a line: where it ran, how fast."""
    env = check.get("environment") or {}
    speed = check.get("ms_per_window") or {}
    one, default = _number(speed.get("cpu_1_thread")), _number(speed.get("cpu_default_threads"))
    timing = (f"; one window at a time {one:.1f} ms on one CPU thread, {default:.1f} ms with "
              f"{speed.get('default_threads')} threads" if one is not None and default is not None
              else "")
    return (f"promotion check in {check.get('where')} (Python {env.get('python')}, torch "
            f"{env.get('torch')}, braindecode {env.get('braindecode') or 'absent'}){timing}")


def _table_section(comparison: dict | None, comparison_note: str | None,
                   rows: list[dict[str, Any]], bootstrap: dict[str, float] | None
                   ) -> dict[str, Any]:
    if not rows:
        return {"note": comparison_note or "no models"}
    source = None if comparison else (f"comparison not available ({comparison_note}): "
                                      "tune NRMSE from training (models/*/model.json) only, "
                                      "no validation subject was read, no champion gate run")
    return {"note": None, "rows": rows, "source": source,
            "margin": _number(comparison.get("margin")) if comparison else None,
            "bootstrap": bootstrap,
            "created": comparison.get("created") if comparison else None,
            "code_version": comparison.get("code_version") if comparison else None,
            "blend": _blend_note(comparison.get("blend") if comparison else None)}


def _blend_note(blend: Any) -> str | None:
    """What the comparison says of the blend: fitted (and which models it left out), or
    why there is none; None for a comparison from before the blend."""
    if not isinstance(blend, dict):
        return None
    left_out = blend.get("left_out") or {}
    listing = "; ".join(f"{name}: {why}" for name, why in left_out.items())
    if blend.get("written"):
        return ("The blend: weights (non-negative, summing to one) fitted on the predictions "
                "of each model for the tune subjects, never on the validation subjects"
                + (f"; left out: {listing}" if listing else "") + ".")
    return f"No blend tonight: {blend.get('why')}" + (f" ({listing})" if listing else "") + "."


# The smallest rise of NRMSE that the page shows as above zero (+0.001 at its three
# decimals): a family marked as used must not read "(0.000 to 0.001)".
_MIN_SHOWN_RISE = 0.0005

# The feature question's answer: "yes" needs the lower score on enough paired resamples
# (the gate's min_paired_wins), "unclear" is a lower score on too few of them.
_VERDICT_WORDS = {"yes": "Yes", "unclear": "Not clearly", "no": "No"}


def _features_block(comparison: dict | None,
                    comparison_note: str | None) -> tuple[dict | None, str | None]:
    """The comparison's ``features`` object, or None and why (an older compare lacks it)."""
    if comparison is None:
        return None, comparison_note
    block = comparison.get("features")
    if not isinstance(block, dict):
        return None, (f"{COMPARISON_FILE} has no 'features' object (written by an older "
                      "compare, before it asked whether the features help)")
    return block, None


def _question_section(block: dict | None, block_note: str | None, rows: list[dict[str, Any]],
                      bootstrap: dict[str, float] | None) -> dict[str, Any]:
    """One sentence: does the best model that reads features beat the best raw-EEG one?"""
    if block is None:
        return {"note": block_note}
    question = block.get("question")
    if question is None:
        return {"note": _why_unanswered(rows)}
    if not isinstance(question, dict):
        raise ValueError(f"features.question is a {type(question).__name__}, not an object")
    scores = [_number(question.get(k)) for k in ("feature_nrmse", "eeg_nrmse", "paired_wins")]
    if None in scores or bootstrap is None:
        return {"note": "features.question or the bootstrap settings lack a finite score, "
                        "paired share or min_paired_wins"}
    feature_nrmse, eeg_nrmse, wins = scores
    needed = bootstrap["min_paired_wins"]
    verdict = ("no" if feature_nrmse >= eeg_nrmse else "yes" if wins >= needed else "unclear")
    reads = {r["name"]: r["reads"] for r in rows}
    feature = _named_score(question.get("feature_model"), reads, "features", feature_nrmse)
    eeg = _named_score(question.get("eeg_model"), reads, "eeg", eeg_nrmse)
    share = f"{_floor_percent(wins)} of the paired resamples of the validation subjects"
    sentence = {
        "yes": f"{feature} beats {eeg} in {share} ({_floor_percent(needed)} needed).",
        "unclear": f"{feature} is lower than {eeg}, but only in {share} "
                   f"({_floor_percent(needed)} needed): the gain may be noise.",
        "no": f"{feature} does not beat {eeg}; it is lower in only {share}.",
    }[verdict]
    return {"note": None, "verdict": verdict,
            "sentence": f"{_VERDICT_WORDS[verdict]}: {sentence}"}


def _why_unanswered(rows: list[dict[str, Any]]) -> str:
    """Why compare could not pair a feature model with a raw-EEG model tonight."""
    scored = [r for r in rows if r["kind"] == "model" and r["nrmse"] is not None]
    if not any(r["inputs"] for r in rows if r["kind"] == "model"):
        return "the comparison's rows do not say what each model reads (an older compare)"
    if not any("features" in (r["inputs"] or ()) for r in scored):
        return "no model that reads the features has a validation score tonight"
    if not any(r["inputs"] == ["eeg"] for r in scored):
        return "no model that reads only the raw EEG window has a validation score tonight"
    return "compare did not pair the two (a model's predictions were not all finite?)"


def _named_score(name: Any, reads: dict[str, str | None], default_reads: str,
                 score: float) -> str:
    """``hybrid (reads eeg + features) 0.812``."""
    name = str(name)
    return f"{name} (reads {reads.get(name) or default_reads}) {score:.3f}"


def _floor_percent(share: float) -> str:
    """A share as a whole percentage, rounded down: 0.896 must not read as reaching 90 %."""
    return f"{math.floor(share * 100 + 1e-9)} %"  # + 1e-9: 0.29 * 100 is 28.999...


def _importance_section(block: dict | None, block_note: str | None,
                        bootstrap: dict[str, float] | None,
                        colors: dict[str, str]) -> dict[str, Any]:
    """Per feature family and model that reads features: the permutation importance."""
    if block is None:
        return {"note": block_note}
    importance = block.get("importance")
    if importance is not None and not isinstance(importance, dict):
        raise ValueError(f"features.importance is a {type(importance).__name__}, not an object")
    if not importance:
        why = block.get("note")
        return {"note": str(why) if why is not None else
                "no model that reads the features was scored, so no permutation importance"}
    families = block.get("families")
    families = ({str(f): _strings(names) for f, names in families.items()}
                if isinstance(families, dict) else {})
    models = [str(m) for m in importance]
    warnings = [f"{m}: its importance is not an object" for m, v in importance.items()
                if not isinstance(v, dict)]
    per_model = {str(m): v if isinstance(v, dict) else {} for m, v in importance.items()}
    unknown = [f for f in dict.fromkeys(str(f) for v in per_model.values() for f in v)
               if f not in families]
    warnings += [f"{', '.join(_models_with(per_model, f))}: importance for family '{f}', "
                 "which is not among the feature families" for f in unknown]
    table = [{"family": family, "features": families.get(family), "cells": {
        model: _importance_cell(values.get(family)) for model, values in per_model.items()}}
        for family in [*families, *unknown]]
    drawn = any(c is not None for r in table for c in r["cells"].values())
    return {"note": None, "models": models, "rows": table, "warnings": warnings,
            "repeats": _number(block.get("repeats")),
            "level": bootstrap["interval_level"] if bootstrap else None,
            "plot": plots.plot_importance(table, models, colors) if drawn else None}


def _models_with(per_model: dict[str, dict], family: str) -> list[str]:
    """The models whose importance names ``family``."""
    return [model for model, values in per_model.items() if family in values]


def _importance_cell(raw: Any) -> dict[str, Any] | None:
    """``{"delta": float or None, "interval": [low, high] or None, "above_zero": bool}``;
    None when absent."""
    if not isinstance(raw, dict):
        return None
    bounds = _interval(raw.get("interval"))
    return {"delta": _number(raw.get("delta_nrmse")), "interval": bounds,
            "above_zero": bounds is not None and bounds[0] >= _MIN_SHOWN_RISE}


def _rt_bins_section(validation: dict | None, comparison_note: str | None,
                     colors: dict[str, str]) -> dict[str, Any]:
    """RMSE and bias of every model per bin of the true RT."""
    if validation is None:
        return {"note": comparison_note or f"{COMPARISON_FILE} has no 'validation' predictions"}
    _, y_true, predictions = _validation_arrays(validation)
    if not predictions or not y_true.size:
        return {"note": f"{COMPARISON_FILE} has no per-window predictions"}
    # imported here, not on top: it imports torch, and a broken torch must cost this
    # section only, not the whole report
    from overnight.evaluation import RT_BIN_EDGES_S, error_by_rt_bin

    bins = [{"label": b["label"], "n_windows": b["n_windows"],
             "rmse": {m: _number(v) for m, v in b["rmse_s"].items()},
             "bias": {m: _number(v) for m, v in b["bias_s"].items()}}
            for b in error_by_rt_bin(y_true, predictions)]
    if not bins:
        return {"note": "no validation window has a finite true RT"}
    names = list(predictions)
    return {"note": None, "models": names, "rows": bins, "window_opens_s": RT_BIN_EDGES_S[0],
            "plot": plots.plot_rt_bins(bins, names, colors)}


def _history_section(champion: dict | None) -> dict[str, Any]:
    """The champions night by night, newest first in the table, oldest first in the plot."""
    if champion is None:
        return {"note": "no champion yet (or no submission folder given)"}
    older = champion.get("previous")
    records = [champion, *(older if isinstance(older, list) else [])]
    entries = [_history_entry(r) for r in records if isinstance(r, dict)]
    plotted = [e for e in reversed(entries) if e["nrmse"] is not None]
    return {"note": None, "entries": entries,
            "plot": plots.plot_history(plotted) if len(plotted) > 1 else None}


def _history_entry(record: dict[str, Any]) -> dict[str, Any]:
    return {"date": str(record.get("date", "?")), "model": str(record.get("model", "?")),
            "nrmse": _number(record.get("nrmse")),
            "interval": _interval(record.get("nrmse_interval")),
            "n_val_windows": _number(record.get("n_val_windows")),
            "reason": str(record.get("reason", ""))}


def _bootstrap(raw: Any) -> dict[str, float] | None:
    """The comparison's bootstrap settings, when all are numbers."""
    if not isinstance(raw, dict):
        return None
    numbers = {k: _number(raw.get(k)) for k in ("resamples", "interval_level",
                                                 "min_paired_wins")}
    return numbers if None not in numbers.values() else None


def _curves_section(runs: dict[str, dict[str, Any]], rows: list[dict[str, Any]],
                    colors: dict[str, str]) -> dict[str, Any]:
    """Learning curves of every model folder; compared models without one are listed (the
    models that did not run are in the table, with the reason)."""
    histories = {name: run["history"] for name, run in runs.items() if run["history"]}
    not_run = {r["name"] for r in rows if r.get("not_run") is not None}
    # models without epochs (the trees) say so in model.json and have no curve to miss
    no_epochs = {name for name, run in runs.items()
                 if run["meta"] and run["meta"].get("per_epoch_history") is False}
    expected = [r["name"] for r in rows if r["kind"] == "model"] + sorted(runs)
    missing = [name for name in dict.fromkeys(expected)
               if name not in histories and name not in not_run | no_epochs]
    details = [_run_details(name, run["meta"]) for name, run in runs.items()
               if run["meta"] and name not in not_run]
    if not histories:
        return {"note": "no training history (models/<name>/history.jsonl) found",
                "missing": missing, "details": details}
    return {"note": None, "plot": plots.plot_curves(histories, colors), "missing": missing,
            "details": details}


def _run_details(name: str, meta: dict[str, Any]) -> dict[str, Any]:
    """What model.json says about one training run, numbers as float or None."""
    details = {key: _number(meta.get(key)) for key in
               ("epochs_run", "best_epoch", "best_tune_nrmse", "n_params", "train_seconds")}
    texts = {key: None if meta.get(key) is None else str(meta[key])
             for key in ("device", "precision", "stopped")}
    return {"name": name, **details, **texts}


def _validation_arrays(validation: dict) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Subjects, true RT and predictions per model, checked to be the same length."""
    subjects = [str(s) for s in validation["subject"]]
    y_true = plots.float_array(validation["y_true"])
    if len(subjects) != y_true.size:
        raise ValueError(f"{len(subjects)} subjects but {y_true.size} y_true values")
    predictions = {}
    for name, values in validation["predictions"].items():
        predictions[str(name)] = plots.float_array(values)
        if predictions[str(name)].size != y_true.size:
            raise ValueError(f"predictions[{name!r}] has {predictions[str(name)].size} values, "
                             f"y_true {y_true.size}")
    return subjects, y_true, predictions


def _scatter_section(validation: dict | None, comparison_note: str | None,
                     rows: list[dict[str, Any]], colors: dict[str, str]) -> dict[str, Any]:
    if validation is None:
        return {"note": comparison_note or f"{COMPARISON_FILE} has no 'validation' predictions"}
    _, y_true, predictions = _validation_arrays(validation)
    if not predictions:
        return {"note": f"{COMPARISON_FILE} has no predictions"}
    nrmse = {r["name"]: r["nrmse"] for r in rows}
    return {"note": None, "plot": plots.plot_scatter(y_true, predictions, nrmse, colors),
            "n_windows": int(y_true.size)}


def _subjects_section(validation: dict | None, comparison_note: str | None,
                      colors: dict[str, str]) -> dict[str, Any]:
    """RMSE per validation subject and model, worst subjects first."""
    if validation is None:
        return {"note": comparison_note or f"{COMPARISON_FILE} has no 'validation' predictions"}
    subjects, y_true, predictions = _validation_arrays(validation)
    if not predictions or not subjects:
        return {"note": f"{COMPARISON_FILE} has no per-window predictions"}
    names = list(predictions)
    table = _per_subject_rmse(np.asarray(subjects), y_true, predictions)
    table.sort(key=lambda r: _worst_first(r["rmse"]))
    return {"note": None, "models": names, "rows": table[:_MAX_SUBJECT_ROWS],
            "n_subjects": len(table), "plot": plots.plot_subjects(table, names, colors)}


def _per_subject_rmse(subjects: np.ndarray, y_true: np.ndarray,
                      predictions: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    rows = []
    for subject in dict.fromkeys(subjects.tolist()):
        mask = subjects == subject
        rmse = {name: _number(float(np.sqrt(np.mean((y_true[mask] - pred[mask]) ** 2))))
                for name, pred in predictions.items()}
        rows.append({"subject": subject, "n_windows": int(mask.sum()),
                     "rt_mean_s": float(np.mean(y_true[mask])), "rmse": rmse})
    return rows


def _worst_first(rmse: dict[str, float | None]) -> float:
    """Sort key: highest mean finite RMSE first, subjects with no finite RMSE last."""
    finite = [v for v in rmse.values() if v is not None]
    return -float(np.mean(finite)) if finite else math.inf


def _timeline_section(stages: list[dict[str, Any]]) -> dict[str, Any]:
    if not stages:
        return {"note": "no stage status files (status/<stage>.json) found", "total_s": None}
    starts = [s["start"] for s in stages if s["start"]]
    # The stages' own durations, not first start to last end: a rerun that reuses stages
    # finished hours earlier must not look like a night that took hours.
    total_s = sum(s["seconds"] or 0.0 for s in stages) or None
    return {"note": None, "stages": stages, "total_s": total_s,
            "plot": plots.plot_timeline(stages) if starts else None}


def _data_section(summary: dict | None, note: str | None) -> dict[str, Any]:
    if summary is None:
        return {"note": note or "window-cache summary not provided (windows file missing "
                                "or unreadable)"}
    skipped = summary.get("skipped")
    dropped = summary.get("dropped_trials")
    per_release = summary.get("windows_per_release")
    checks = summary.get("channel_checks")
    return {
        "note": None, "summary": summary,
        "skipped": [{"path": str(s.get("path", "?")), "reason": str(s.get("reason", "?"))}
                    for s in skipped if isinstance(s, dict)] if isinstance(skipped, list) else [],
        "dropped": sorted(((str(k), _number(v)) for k, v in dropped.items()),
                          key=lambda kv: -(kv[1] or 0)) if isinstance(dropped, dict) else [],
        "numbers": {key: _number(summary.get(key)) for key in
                    ("n_subjects", "n_recordings", "n_windows", "rt_mean_s", "rt_std_s",
                     "sfreq_hz", "window_start_s", "window_stop_s", "n_reference_flat")},
        "bids_roots": _strings(summary.get("bids_roots")),
        "releases": sorted(((str(k) or "unknown", _number(v))
                            for k, v in per_release.items())) if isinstance(per_release, dict)
        else [],
        "channel_checks": [_channel_check(c) for c in checks if isinstance(c, dict)]
        if isinstance(checks, list) else [],
    }


def _channel_check(check: dict) -> dict[str, Any]:
    """One recording's flat and noisy channels (beyond the flat reference), as text."""
    return {"path": str(check.get("path", "?")),
            "flat": ", ".join(_strings(check.get("flat_channels"))) or "—",
            "noisy": ", ".join(_strings(check.get("noisy_channels"))) or "—"}


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _environment_section(environment: dict, comparison: dict | None,
                         cache_summary: dict | None) -> dict[str, Any]:
    """Versions and the code version of each artefact, to spot a stale one."""
    keys = [k for k in _ENV_ORDER if k in environment] + sorted(
        str(k) for k in environment if k not in _ENV_ORDER)
    items = [(key, str(environment[key])) for key in keys]
    if comparison and comparison.get("code_version") is not None:
        items.append(("comparison code_version", str(comparison["code_version"])))
    if cache_summary and cache_summary.get("code_version") is not None:
        items.append(("window cache code_version", str(cache_summary["code_version"])))
    return {"note": None if items else "environment not provided", "rows": items}


# ---------------------------------------------------------------- small helpers


def _number(value: Any) -> float | None:
    """A finite float, or None for null, NaN, infinities and anything not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _interval(value: Any) -> list[float] | None:
    """``[low, high]`` when ``value`` holds two finite numbers, else None."""
    if not isinstance(value, list) or len(value) != 2:
        return None
    bounds = [_number(b) for b in value]
    return None if None in bounds else bounds


def _parse_time(value: Any) -> datetime | None:
    """An ISO timestamp as naive local time (aware ones converted), None when absent."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone().replace(tzinfo=None) if moment.tzinfo else moment


