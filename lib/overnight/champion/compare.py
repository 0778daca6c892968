"""Stage compare, and rollback: every model of the night and the champion scored on the
same validation windows, beside the mean predictor; promotion through the gate; the
comparison, written as JSON."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overnight import atomic
from overnight.champion.blend import discard_blend, fit_blend
from overnight.champion.fresh_process_check import time_batch_one
from overnight.champion.gate import decide, hold_for_integrity
from overnight.champion.record import (
    install,
    integrity_fix,
    read_champion,
    recover_install,
    verify_files,
)
from overnight.champion.submission import predict_with_submission
from overnight.config import CompareConfig
from overnight.evaluation import (
    feature_shuffles,
    importance_of,
    interval,
    load_trained_model,
    nrmse,
    predict,
    predict_feature_variants,
    rmse,
    subject_bootstrap,
)
from overnight.features.cache import read_features
from overnight.features.spec import FEATURE_FAMILIES
from overnight.models.declaration import BLEND_NAME
from overnight.windows.cache import WindowSet, load_windows, open_cache
from overnight.windows.split import read_split

log = logging.getLogger(__name__)
_AS_SHIPPED = "as shipped"  # a feature model's prediction with the features it computes
_TIMED_WINDOWS = 32  # validation windows each model answers one at a time, timed


def compare_and_promote(models_dir: Path, windows_path: Path, split_path: Path,
                        submission_dir: Path, out_path: Path, cfg: CompareConfig,
                        features_path: Path | None = None) -> dict[str, Any]:
    """Score tonight's models, the champion and the mean predictor on the same validation
    windows; promote through the gate; write ``out_path`` (JSON).

    First the blend of the night's models is fitted on their tune predictions
    (``blend.fit_blend``, with ``cfg.blend``): a row like the others.

    With the feature cache (``features_path``), the comparison also answers whether the
    features help: the best model that reads them against the best that reads the raw
    window alone (paired over the same bootstrap resamples), and each feature family's
    permutation importance for every model that reads features.

    An install a kill interrupted is finished (or discarded) first. A champion whose files
    no longer match ``champion.json`` is neither scored nor replaced: the comparison's
    ``champion_integrity`` says what differs and how to mend it.
    """
    recovered = recover_install(submission_dir)
    split = read_split(split_path)
    val = load_windows(windows_path, split["val"])
    y_true = val.rt.astype(np.float64)
    rows: list[dict[str, Any]] = []
    predictions: dict[str, np.ndarray] = {}

    blend = (fit_blend(models_dir, windows_path, split_path) if cfg.blend
             else discard_blend(models_dir))
    shuffles = _feature_shuffles(features_path, val, cfg)
    shuffled: dict[str, dict[str, np.ndarray]] = {}  # model -> its predictions per shuffle
    for model_dir in _model_dirs(models_dir):
        row, pred, by_shuffle = _score_model(model_dir, val.eeg, y_true, predictions,
                                             shuffles and shuffles[1])
        rows.append(row)
        if pred is not None:
            predictions[row["name"]] = pred
        if by_shuffle is not None:
            shuffled[row["name"]] = by_shuffle

    champion = read_champion(submission_dir)
    champion_nrmse, champion_problem = None, None
    tampered = verify_files(submission_dir, champion) if champion is not None else None
    if tampered:
        log.error("champion: %s; %s", tampered, integrity_fix(champion))
        rows.append({"name": "champion", "kind": "champion", "model": champion.get("model"),
                     "since": champion.get("date"), "delta_vs_champion": None, "nrmse": None,
                     "rmse_s": None, "error": f"does not match its record: {tampered}"})
    elif champion is not None:
        row, pred, champion_problem = _score_champion(submission_dir, champion, val.eeg,
                                                      y_true, val.sfreq_hz)
        rows.append(row)
        champion_nrmse = row["nrmse"]
        if pred is not None:
            predictions["champion"] = pred
        for r in rows:
            if r["kind"] == "model" and r["nrmse"] is not None and champion_nrmse:
                r["delta_vs_champion"] = r["nrmse"] / champion_nrmse - 1.0

    train_mean = _train_mean_rt(windows_path, split["train"])
    references = {"mean predictor": np.full_like(y_true, train_mean)}
    rows += [_reference_row(name, y_true, pred) for name, pred in references.items()]

    paired_wins, resampled = _add_intervals(rows, y_true, {**predictions, **references},
                                            val.subject, cfg)
    scores = {r["name"]: r["nrmse"] for r in rows
              if r["kind"] == "model" and not r.get("not_run")}
    decision = (hold_for_integrity(tampered) if tampered
                else decide(scores, champion_nrmse, cfg, champion_problem, paired_wins,
                            _too_slow(rows, cfg)))
    log.info("decision: %s", decision.reason)
    if decision.promoted:
        model_dir = models_dir / decision.model
        promoted_row = next(r for r in rows if r["name"] == decision.model)
        record = {"model": decision.model, "nrmse": scores[decision.model],
                  "nrmse_interval": promoted_row.get("nrmse_interval"),
                  "reason": decision.reason, "source": str(model_dir.resolve()),
                  "n_val_windows": len(y_true), "val_subjects": split["val"]}
        installed = install(model_dir, submission_dir, val.eeg, predictions[decision.model],
                            val.sfreq_hz, record, cfg.speed_limit_ms)
        promoted_row["scorer_check"] = installed["scorer_check"]
        log.info("promoted %s: %s", decision.model, ", ".join(installed["files"]))

    result = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "margin": cfg.margin,
        "bootstrap": {"resamples": cfg.bootstrap_resamples, "seed": cfg.bootstrap_seed,
                      "interval_level": cfg.interval_level,
                      "min_paired_wins": cfg.min_paired_wins},
        "split": {"n_train_subjects": len(split["train"]), "n_tune_subjects": len(split["tune"]),
                  "n_val_subjects": len(split["val"]), "n_val_windows": len(y_true)},
        "rows": rows,
        "champion_integrity": ({"problem": tampered, "fix": integrity_fix(champion)}
                               if tampered else None),
        "install_recovery": recovered,
        "decision": {**dataclasses.asdict(decision),
                     "previous": ({"model": champion["model"], "nrmse": champion_nrmse}
                                  if champion else None)},
        "blend": blend,
        "features": _features_section(rows, resampled, val, shuffles, shuffled, cfg),
        "validation": {"subject": [str(s) for s in val.subject], "y_true": y_true.tolist(),
                       "predictions": {k: v.tolist() for k, v in predictions.items()}},
    }
    atomic.write_json(out_path, _finite_or_null(result))
    return result


def rollback(model_dir: Path, windows_path: Path, split_path: Path,
             submission_dir: Path) -> dict[str, Any]:
    """Make a trained model champion again (the night's baseline, or the model folder of a
    recorded champion): regenerate, check, install and record it.

    When the same weights were champion before, the regenerated files must be
    byte-identical to the ones recorded then.
    """
    split = read_split(split_path)
    val = load_windows(windows_path, split["val"])
    y_true = val.rt.astype(np.float64)
    row, pred, _ = _score_model(model_dir, val.eeg, y_true)
    if pred is None or row["nrmse"] is None:
        why = row.get("error") or row.get("not_run") or "non-finite NRMSE"
        raise RuntimeError(f"cannot roll back: the model in {model_dir} does not predict "
                           f"({why})")
    record = {"model": row["name"], "nrmse": row["nrmse"],
              "reason": f"rollback to {row['name']} ({model_dir})",
              "source": str(model_dir.resolve()), "n_val_windows": len(y_true),
              "val_subjects": split["val"]}
    installed = install(model_dir, submission_dir, val.eeg, pred, val.sfreq_hz, record)
    earlier = [r for r in installed["previous"]
               if r.get("weights_sha256") == installed["weights_sha256"]]
    if earlier and earlier[0]["files"] != installed["files"]:
        raise RuntimeError("the regenerated submission differs from the one recorded on "
                           f"{earlier[0]['date']} for the same weights")
    log.info("rolled back to %s (NRMSE %.4f); %s", row["name"], row["nrmse"],
             f"byte-identical to the submission of {earlier[0]['date']}" if earlier
             else f"first time these {row['name']} weights are champion")
    return installed


def _model_dirs(models_dir: Path) -> list[Path]:
    """The model folders, the blend last: it is scored from its members' predictions."""
    return sorted((p.parent for p in models_dir.glob("*/model.json")),
                  key=lambda d: (d.name == BLEND_NAME, d.name))


def _score_model(model_dir: Path, eeg: np.ndarray, y_true: np.ndarray,
                 scored: dict[str, np.ndarray] | None = None,
                 shuffles: dict[str, np.ndarray] | None = None
                 ) -> tuple[dict[str, Any], np.ndarray | None, dict[str, np.ndarray] | None]:
    """A model's row and predictions; with ``shuffles`` (``feature_shuffles``), a model that
    reads features also answers every shuffle, from the same pass over the windows."""
    meta = json.loads((model_dir / "model.json").read_text())
    row = {"name": model_dir.name, "kind": "model", "model": meta["model"],
           "inputs": meta.get("inputs"), "delta_vs_champion": None}
    if meta.get("not_run"):
        return {**row, "not_run": meta["not_run"], "nrmse": None, "rmse_s": None}, None, None
    row.update(epochs=meta["epochs_run"], best_epoch=meta["best_epoch"],
               n_params=meta["n_params"], train_seconds=meta["train_seconds"],
               tune_nrmse=meta.get("best_tune_nrmse"))
    if meta["model"] == BLEND_NAME:
        row["blend_weights"] = {m["name"]: m["weight"] for m in meta["members"]}
    try:
        pred, by_shuffle = _predictions(model_dir, meta, eeg, scored or {}, shuffles)
        row["ms_per_window"] = _batch_one_speed(model_dir, eeg)
    except Exception as exc:  # one broken model must not stop the comparison
        log.exception("%s could not be evaluated", model_dir)
        return ({**row, "nrmse": None, "rmse_s": None, "error": f"{type(exc).__name__}: {exc}"},
                None, None)
    return {**row, **_scores(y_true, pred)}, pred, by_shuffle


def _predictions(model_dir: Path, meta: dict[str, Any], eeg: np.ndarray,
                 scored: dict[str, np.ndarray], shuffles: dict[str, np.ndarray] | None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray] | None]:
    if meta["model"] == BLEND_NAME and all(m["name"] in scored for m in meta["members"]):
        # its members' weighted sum, as the module computes it (the fresh-process check of
        # a promoted blend runs the module itself)
        return sum(m["weight"] * scored[m["name"]] for m in meta["members"]), None
    model, _ = load_trained_model(model_dir)
    if shuffles is None or meta["model"] == BLEND_NAME \
            or "features" not in (meta.get("inputs") or ()):
        return predict(model, eeg), None
    by_variant = predict_feature_variants(model, eeg, {_AS_SHIPPED: None, **shuffles})
    return by_variant.pop(_AS_SHIPPED), by_variant


def _batch_one_speed(model_dir: Path, eeg: np.ndarray) -> dict[str, float]:
    """The model's time per window in the scorer's loop (one window at a time), here."""
    model, _ = load_trained_model(model_dir)
    return time_batch_one(model.eval(), torch.from_numpy(eeg[:_TIMED_WINDOWS]))


def _too_slow(rows: list[dict[str, Any]], cfg: CompareConfig) -> dict[str, float]:
    """Models slower in the scorer's loop than ``cfg.max_ms_per_window`` (the slower of
    one thread and the default threads), by name; none when the limit is off."""
    limit = cfg.speed_limit_ms
    slow = {}
    for row in rows:
        speed = row.get("ms_per_window")
        if limit is not None and row["kind"] == "model" and speed:
            ms = max(speed["cpu_1_thread"], speed["cpu_default_threads"])
            if ms > limit:
                slow[row["name"]] = ms
    return slow


def _score_champion(submission_dir: Path, champion: dict[str, Any], eeg: np.ndarray,
                    y_true: np.ndarray, sfreq_hz: float
                    ) -> tuple[dict[str, Any], np.ndarray | None, str | None]:
    """The champion, its files checked: a submission that fails to run is replaced."""
    row = {"name": "champion", "kind": "champion", "model": champion.get("model"),
           "since": champion.get("date"), "delta_vs_champion": None}
    try:
        pred = predict_with_submission(submission_dir, eeg, sfreq_hz)
        return {**row, **_scores(y_true, pred)}, pred, None
    except Exception as exc:  # a broken champion is replaced, not fatal
        log.exception("the champion submission could not be evaluated")
        problem = f"the champion submission fails ({type(exc).__name__}: {exc})"
    log.warning("champion: %s", problem)
    return {**row, "nrmse": None, "rmse_s": None, "error": problem}, None, problem


def _add_intervals(rows: list[dict[str, Any]], y_true: np.ndarray,
                   predictions: dict[str, np.ndarray], subjects: np.ndarray,
                   cfg: CompareConfig) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Give every scored row its bootstrap interval and every model the share of paired
    resamples in which it beats the champion; return those shares by model, and every
    prediction's NRMSE on each resample."""
    finite = {name: pred for name, pred in predictions.items() if np.isfinite(pred).all()}
    if not finite:
        return {}, {}
    resampled = subject_bootstrap(y_true, finite, subjects, cfg.bootstrap_resamples,
                                  cfg.bootstrap_seed)
    champion = resampled.get("champion")
    wins = {}
    for row in rows:
        values = resampled.get(row["name"])
        if values is None:
            continue
        row["nrmse_interval"] = list(interval(values, cfg.interval_level))
        if row["kind"] == "model" and champion is not None:
            wins[row["name"]] = row["paired_wins"] = _share_below(values, champion)
    return wins, resampled


def _share_below(values: np.ndarray, other: np.ndarray) -> float:
    """The share of the paired resamples (both finite) in which ``values`` is lower."""
    paired = np.isfinite(values) & np.isfinite(other)
    return float(np.mean(values[paired] < other[paired])) if paired.any() else 0.0


def _features_section(rows: list[dict[str, Any]], resampled: dict[str, np.ndarray],
                      val: WindowSet,
                      shuffles: tuple[dict[str, list[int]], dict[str, np.ndarray]] | None,
                      shuffled: dict[str, dict[str, np.ndarray]],
                      cfg: CompareConfig) -> dict[str, Any]:
    """Do the features help: the best feature model against the best raw-window model, and
    each family's permutation importance (``evaluation.importance_of`` the predictions of
    every shuffle, ``shuffled``, made while scoring)."""
    # single models only: the blend mixes models that read features with ones that do not
    scored = [r for r in rows if r["kind"] == "model" and r["nrmse"] is not None
              and r["name"] in resampled and r["model"] != BLEND_NAME]
    readers = [r for r in scored if "features" in (r.get("inputs") or ())]
    raw = [r for r in scored if list(r.get("inputs") or ()) == ["eeg"]]
    question = None
    if readers and raw:
        best_reader = min(readers, key=lambda r: r["nrmse"])
        best_raw = min(raw, key=lambda r: r["nrmse"])
        question = {"feature_model": best_reader["name"], "feature_nrmse": best_reader["nrmse"],
                    "eeg_model": best_raw["name"], "eeg_nrmse": best_raw["nrmse"],
                    "paired_wins": _share_below(resampled[best_reader["name"]],
                                                resampled[best_raw["name"]])}
    section: dict[str, Any] = {"question": question, "families": FEATURE_FAMILIES,
                               "repeats": cfg.importance_repeats, "importance": {}}
    if shuffles is None:
        section["note"] = "no feature cache given: no permutation importance"
        return section
    for row in (r for r in readers if r["name"] in shuffled):
        section["importance"][row["name"]] = importance_of(
            shuffled[row["name"]], val.rt.astype(np.float64), val.subject, shuffles[0],
            cfg.bootstrap_resamples, cfg.interval_level, cfg.importance_repeats,
            cfg.bootstrap_seed)
        log.info("%s: permutation importance %s", row["name"], ", ".join(
            f"{family} {v['delta_nrmse']:+.3f}"
            for family, v in section["importance"][row["name"]].items()))
    return section


def _feature_shuffles(features_path: Path | None, val: WindowSet, cfg: CompareConfig
                      ) -> tuple[dict[str, list[int]], dict[str, np.ndarray]] | None:
    """The feature families' columns, and the validation windows' features intact and with
    each family shuffled (``evaluation.feature_shuffles``); None without a feature cache."""
    if features_path is None:
        return None
    features, names = read_features(features_path, val.index)
    columns = {family: [names.index(n) for n in members]
               for family, members in FEATURE_FAMILIES.items()}
    return columns, feature_shuffles(features, columns, cfg.importance_repeats,
                                     cfg.bootstrap_seed)


def _scores(y_true: np.ndarray, pred: np.ndarray) -> dict[str, float | None]:
    score = nrmse(y_true, pred)
    return {"nrmse": score if math.isfinite(score) else None,
            "rmse_s": rmse(y_true, pred) if math.isfinite(score) else None}


def _reference_row(name: str, y_true: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    return {"name": name, "kind": "reference", **_scores(y_true, pred)}


def _train_mean_rt(windows_path: Path, train_subjects: list[str]) -> float:
    with open_cache(windows_path) as cache:
        subjects, rt = cache.subjects(), cache.rt()
    return float(rt[np.isin(subjects, train_subjects)].mean())


def _finite_or_null(obj: Any) -> Any:
    """JSON has no NaN: write non-finite floats as null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_null(v) for v in obj]
    return obj
