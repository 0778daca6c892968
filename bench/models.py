"""Which models and training settings hold up on subjects they never saw; writes the
"Models" section of docs/BENCHMARKS.md.

On synthetic datasets (the demo's; the hard setting, configs/synth-hard.toml: few
subjects, weak task signals, subjects that differ a lot; the many-subject setting,
configs/synth-many.toml: 150 subjects with the hard setting's differences and response
times shaped like the real releases'; "other", 150 subjects of bench/othergen.py, a
generator with another physiology, a check on methods tuned to ours; and family-0..3,
bench/family.py's draws of physiology from wide ranges, 60 subjects each, the draws being
the repeats across physiologies), every variant (a
model and its settings) is trained with several seeds on the same subject-disjoint split,
selecting its epoch on the tune subjects, then scored once on the validation subjects with
the 90 % interval of the subject bootstrap that compare uses. The seed spread and the
interval are the noise any difference is read against. Beside them: the mean predictor, a
ridge regression on the window features (fitted on the training subjects, its penalty
chosen on the tune subjects). With several variants, the blend compare would fit of each
seed's variants (weights on their tune predictions) is one more row, and a last table gives
each variant's mean over the datasets: defaults are chosen on it, never on one dataset.

Usage: python bench/models.py --work DIR [--seeds 3] [--datasets demo,hard,many,other,...]
           [--variant LABEL=MODEL[:SECTION.KEY=VALUE;...]]... [--jobs 2]
           [--blend-set LABEL=VARIANT,VARIANT,...]... [--out docs/BENCHMARKS.md]
           [--section models]

A model that cannot be built here (EEGNeX without braindecode) is a row that says why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from run import REPO, machine, replace_section, run_job

from overnight.champion.blend import blend_weights
from overnight.config import CompareConfig, load_config
from overnight.evaluation import (
    interval,
    load_trained_model,
    nrmse,
    predict,
    subject_bootstrap,
)
from overnight.features.cache import read_features
from overnight.layout import NightFolder
from overnight.models.catalog import load_catalog
from overnight.training.checkpoint import TUNE_PREDICTIONS_FILE
from overnight.windows.cache import load_windows, open_cache
from overnight.windows.split import read_split

log = logging.getLogger("bench.models")
FAMILY_DRAWS = 4  # bench/family.py's draws: the repeats across physiologies
FAMILY = tuple(f"family-{k}" for k in range(FAMILY_DRAWS))
DATASETS = {"demo": REPO / "configs" / "demo.toml", "hard": REPO / "configs" / "synth-hard.toml",
            "many": REPO / "configs" / "synth-many.toml",
            # bench/othergen.py's physiology, trained with the many-subject settings
            "other": REPO / "configs" / "synth-many.toml",
            # bench/family.py's draws (60 subjects each), trained as the demo is
            **dict.fromkeys(FAMILY, REPO / "configs" / "demo.toml")}
# The datasets another generator writes as a night folder: its command line.
MADE_ELSEWHERE = {"other": ["bench/othergen.py"],
                  **{name: ["bench/family.py", "--draw", str(k)]
                     for k, name in enumerate(FAMILY)}}
# The night's training without what its defaults add to the loop (shifted crops, gains,
# weight averaging, sensor rotations, 3-seed ensembles; the tune set stays): the reference
# the defaults must beat, as the "-before" rows.
BEFORE = ("train.crop_shift_s=0", "train.scale_sd=0", "train.channel_scale_sd=0",
          "train.ema_epochs=0", "train.sensor_rotation_deg=0", "train.ensemble=1")
BEFORE_MODELS = ("baseline", "hybrid")
# The locators as they learned before the dense time target and per-window scaling: the
# squared RT error alone, through the training split's channel statistics ("-squared").
SQUARED = ("train.normalization=train", "train.dense_weight=0")
SQUARED_MODELS = ("press", "timing")
# Every variant trains one network per seed: the seeds are the repeats, and the night's
# 3-seed ensembles would triple the table's hours (they moved hard by 0.008 and kept its
# ranking: "the second augmentation screen" in docs/BENCHMARKS.md).
EACH_VARIANT = ("train.ensemble=1",)


def default_variants() -> dict[str, tuple[str, tuple[str, ...]]]:
    """label -> (model, settings): what `make bench-models` compares by default: every
    registered model with the night's defaults, the "-before" and the "-squared"
    references."""
    return {**{name: (name, ()) for name in load_catalog().names},
            **{f"{name}-before": (name, BEFORE) for name in BEFORE_MODELS},
            **{f"{name}-squared": (name, SQUARED) for name in SQUARED_MODELS}}


def seeds_for(dataset: str, seeds: int) -> int:
    """A family draw trains one seed: the draws are the repeats across physiologies."""
    return 1 if dataset in FAMILY else seeds


# train settings that change how fast a network is scored, not what it learns: a changed
# default among them keeps the bench's finished trainings
NOT_LEARNED = ("eval_batch_size",)
RIDGE_PENALTIES = tuple(10.0 ** k for k in range(-3, 5))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for data and models")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per variant")
    parser.add_argument("--datasets", type=_names(DATASETS), default=list(DATASETS),
                        help=f"comma-separated, of {sorted(DATASETS)}")
    parser.add_argument("--variant", dest="variants", action="append", type=_variant,
                        metavar="LABEL=MODEL[:SECTION.KEY=VALUE;...]",
                        help="a variant to train (repeatable; default: every registered "
                             "model, and " + ", ".join(
                                 [f"{n}-before" for n in BEFORE_MODELS]
                                 + [f"{n}-squared" for n in SQUARED_MODELS]) + ")")
    parser.add_argument("--blend-set", dest="blend_sets", action="append", type=_blend_set,
                        default=[], metavar="LABEL=VARIANT,VARIANT,...",
                        help="a row for the blend compare would fit of these variants alone "
                             "(repeatable): which recipes the night's models should have")
    parser.add_argument("--jobs", type=int, default=1,
                        help="trainings at once, the cores shared among them")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    parser.add_argument("--section", default="models",
                        help="the section of --out to write (one per machine or subset)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    variants = dict(args.variants) if args.variants else default_variants()
    unknown = {v for _, members in args.blend_sets for v in members} - set(variants)
    if unknown:
        parser.error(f"--blend-set names variants that are not trained: {sorted(unknown)}")
    results = {name: dataset_results(args.work / name, DATASETS[name],
                                     seeds_for(name, args.seeds), variants, args.jobs,
                                     dict(args.blend_sets))
               for name in args.datasets}
    (args.work / f"{args.section}.json").write_text(json.dumps(results, indent=2))
    command = ["python", "bench/models.py", *(sys.argv[1:] if argv is None else argv)]
    section = render(results, args.seeds, shlex.join(command), args.section)
    replace_section(args.out, args.section, section)
    print(section)
    return 0


def _names(allowed: dict[str, Any]):
    def parse(text: str) -> list[str]:
        names = [n for n in text.split(",") if n]
        unknown = sorted(set(names) - set(allowed))
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"{text!r}: expected some of {sorted(allowed)}")
        return names
    return parse


def _variant(text: str) -> tuple[str, tuple[str, tuple[str, ...]]]:
    label, sep, spec = text.partition("=")
    model, _, settings = spec.partition(":")
    if not sep or not label or not model:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL=MODEL[:SECTION.KEY=VALUE;...]")
    return label, (model, tuple(s for s in settings.split(";") if s))


def _blend_set(text: str) -> tuple[str, tuple[str, ...]]:
    label, sep, members = text.partition("=")
    names = tuple(m for m in members.split(",") if m)
    if not sep or not label or len(names) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL=VARIANT,VARIANT,...")
    return label, names


def prepare(work: Path, config: Path) -> NightFolder:
    """The dataset's BIDS tree, window cache, split and features (made once)."""
    folder, bids = NightFolder(work), work / "bids"
    common = ["--config", str(config)]
    maker = MADE_ELSEWHERE.get(work.name)
    if maker is not None:
        if not folder.features.exists():
            run_job(f"{work.name}: {Path(maker[0]).name}", [*maker, "--out", str(work)])
        return folder
    if not (bids / "dataset_description.json").exists():
        run_job(f"{work.name}: synth", ["jobs/synth.py", *common, "--out", str(bids)])
    if not folder.split.exists():
        run_job(f"{work.name}: windows", ["jobs/windows.py", *common, "--bids-root", str(bids),
                                          "--out", str(folder.windows),
                                          "--split-out", str(folder.split)])
    if not folder.features.exists():
        run_job(f"{work.name}: features", ["jobs/features.py", *common, "--windows",
                                           str(folder.windows), "--out", str(folder.features)])
    return folder


def dataset_results(work: Path, config: Path, seeds: int,
                    variants: dict[str, tuple[str, tuple[str, ...]]],
                    jobs: int = 1, blend_sets: dict[str, tuple[str, ...]] | None = None
                    ) -> dict[str, Any]:
    """Prepare one dataset, train every variant with every seed, score them; with
    ``blend_sets``, also the blend of each set of variants alone ("blend:LABEL")."""
    folder = prepare(work, config)
    runs = [(label, model, settings, seed)
            for label, (model, settings) in variants.items() for seed in range(seeds)]
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(jobs) as pool:
        outs = list(pool.map(lambda run: _train(folder, config, *run, threads), runs))
    split = read_split(folder.split)
    val = load_windows(folder.windows, split["val"])
    y_true = val.rt.astype(np.float64)
    with open_cache(folder.windows) as cache:
        y_tune = cache.rt()[np.isin(cache.subjects(), split["tune"])]
    cfg = CompareConfig()
    rows: dict[str, dict[str, Any]] = {}
    blendable: dict[int, dict[str, tuple[Path, np.ndarray]]] = {}  # seed -> label -> run
    for (label, model, settings, seed), out in zip(runs, outs, strict=True):
        row = rows.setdefault(label, {"label": label, "model": model,
                                      "settings": list(settings), "runs": []})
        meta = json.loads((out / "model.json").read_text())
        if meta.get("not_run"):
            row["runs"].append({"seed": seed, "not_run": meta["not_run"]})
            continue
        trained, _ = load_trained_model(out)
        pred = predict(trained, val.eeg)
        blendable.setdefault(seed, {})[label] = (out, pred)
        row["runs"].append({"seed": seed, "tune_nrmse": meta["best_tune_nrmse"],
                            **_scored(y_true, pred, val.subject, cfg),
                            "epochs": meta["epochs_run"], "seconds": meta["train_seconds"]})
    # the blend of every variant, then of each named set alone
    blends = {"blend": None} if len(variants) > 1 else {}
    blends.update({f"blend:{label}": names for label, names in (blend_sets or {}).items()})
    for label, names in blends.items():
        runs = [_blend_run(seed, members if names is None else {n: members[n] for n in names},
                           y_tune, y_true, val.subject, cfg)
                for seed, members in sorted(blendable.items())
                if names is None or all(n in members for n in names)]
        if runs:  # a set whose variant did not run here has no row
            rows[label] = {"label": label, "model": "blend", "runs": runs,
                           "settings": ["weights on the tune subjects" if names is None
                                        else ", ".join(names)]}
    return {"n_train_subjects": len(split["train"]), "n_tune_subjects": len(split["tune"]),
            "n_val_subjects": len(split["val"]), "n_val_windows": len(y_true),
            "rows": list(rows.values()),
            "mean_predictor": nrmse(y_true, np.full_like(y_true, _train_rt(folder).mean())),
            "ridge": ridge_on_features(folder, split, y_true)}


def _scored(y_true: np.ndarray, pred: np.ndarray, subjects: np.ndarray,
            cfg: CompareConfig) -> dict[str, Any]:
    boot = subject_bootstrap(y_true, {"m": pred}, subjects, cfg.bootstrap_resamples,
                             cfg.bootstrap_seed)["m"]
    return {"nrmse": nrmse(y_true, pred), "interval": interval(boot, cfg.interval_level)}


def _blend_run(seed: int, members: dict[str, tuple[Path, np.ndarray]], y_tune: np.ndarray,
               y_true: np.ndarray, subjects: np.ndarray, cfg: CompareConfig) -> dict[str, Any]:
    """The blend compare would fit of one seed's variants (on their tune predictions),
    scored on the validation subjects."""
    tune = np.stack([np.load(out / TUNE_PREDICTIONS_FILE)["rt_s"]
                     for out, _ in members.values()], axis=1)
    weights = blend_weights(tune, y_tune)
    pred = np.stack([val for _, val in members.values()], axis=1) @ weights
    return {"seed": seed, "tune_nrmse": nrmse(y_tune, tune @ weights),
            **_scored(y_true, pred, subjects, cfg), "epochs": "-", "seconds": 0.0,
            "weights": {label: float(w) for label, w in zip(members, weights, strict=True)
                        if w > 0}}


def _train(folder: NightFolder, config: Path, label: str, model: str,
           settings: tuple[str, ...], seed: int, threads: int) -> Path:
    """Train one seed of one variant (kept when it already finished with the same resolved
    settings: a changed default trains it again, unless it is NOT_LEARNED); its folder.
    Every variant trains as EACH_VARIANT says, then as its own settings say."""
    settings = (*EACH_VARIANT, *settings)
    resolved = load_config(config, list(settings)).to_dict()
    learned = {k: v for k, v in resolved["train"].items() if k not in NOT_LEARNED}
    digest = hashlib.sha256(json.dumps([model, learned, resolved["gbm"]],
                                       sort_keys=True, default=str).encode()).hexdigest()[:8]
    out = folder.models / f"{label}-{digest}-seed{seed}"
    if not (out / "model.json").exists():
        # an ensemble trains seeds train.seed, train.seed + 1, ...: the bench's seeds start
        # one ensemble apart, so that no two of them share a member
        first = seed * resolved["train"]["ensemble"]
        sets = [arg for s in (*settings, f"train.seed={first}") for arg in ("--set", s)]
        run_job(f"{folder.root.name}: {out.name}", [
            "jobs/train.py", "--config", str(config), "--model", model, "--windows",
            str(folder.windows), "--split", str(folder.split), "--features",
            str(folder.features), "--out", str(out), *sets],
            env={"OMP_NUM_THREADS": str(threads)})
    return out


def _train_rt(folder: NightFolder) -> np.ndarray:
    split = read_split(folder.split)
    with open_cache(folder.windows) as cache:
        return cache.rt()[np.isin(cache.subjects(), split["train"])]


def ridge_on_features(folder: NightFolder, split: dict[str, Any], y_val: np.ndarray) -> float:
    """A ridge regression on the standardised window features: fitted on the training
    subjects, its penalty chosen on the tune subjects, scored on the validation subjects."""
    features, _ = read_features(folder.features)
    with open_cache(folder.windows) as cache:
        subjects, rt = cache.subjects(), cache.rt()
    sides = {side: np.isin(subjects, split[side]) for side in ("train", "tune", "val")}
    x_train = features[sides["train"]].astype(np.float64)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-12

    def design(mask: np.ndarray) -> np.ndarray:
        scaled = (features[mask].astype(np.float64) - mean) / std
        return np.hstack([scaled, np.ones((len(scaled), 1))])

    x, y = design(sides["train"]), rt[sides["train"]]
    fits = {}
    for penalty in RIDGE_PENALTIES:
        eye = np.eye(x.shape[1]) * penalty
        eye[-1, -1] = 0.0  # the intercept is not penalised
        fits[penalty] = np.linalg.solve(x.T @ x + eye, x.T @ y)
    tune_x, tune_y = design(sides["tune"]), rt[sides["tune"]]
    best = min(fits, key=lambda p: nrmse(tune_y, tune_x @ fits[p]))
    return nrmse(y_val, design(sides["val"]) @ fits[best])


def render(results: dict[str, Any], seeds: int, command: str, section: str) -> str:
    m = machine()
    lines = [
        "## Models: which holds up on new subjects"
        + ("" if section == "models" else f" ({section})") + "\n",
        f"- command: `{command}` (`make bench-models`), {time.strftime('%Y-%m-%d')}",
        f"- machine: {m['cpu']}; GPU: {m['gpu']}; torch {m['torch']}",
        f"- {seeds} seeds per variant"
        + (" (one per family draw)" if any(seeds_for(n, seeds) != seeds for n in results)
           else "") + f", one network each "
        f"({', '.join(EACH_VARIANT)}), each selecting its epoch on the tune subjects; NRMSE on "
        "the validation subjects: mean over seeds (each seed in brackets), and the seed "
        "spread (max - min); interval: 90 % subject bootstrap of each seed's model, averaged "
        "over seeds; tune: the tune-subject NRMSE the training selected on",
        "",
    ]
    for name, r in results.items():
        made_by = (" ".join(MADE_ELSEWHERE[name]) if name in MADE_ELSEWHERE
                   else DATASETS[name].relative_to(REPO))
        lines += [f"**{name}** ({made_by}): {r['n_train_subjects']} "
                  f"training, {r['n_tune_subjects']} tune and {r['n_val_subjects']} validation "
                  f"subjects, {r['n_val_windows']} validation windows. References: mean "
                  f"predictor {_fixed(r['mean_predictor'])}, ridge on the features "
                  f"{_fixed(r['ridge'])}.", "",
                  "| variant | settings | NRMSE (seeds) | spread | 90 % interval | tune | "
                  "epochs | training |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in r["rows"]:
            settings = "; ".join(row["settings"]) or "defaults"
            if "weights" in row["runs"][0]:
                settings = "weights, seed 0: " + ", ".join(
                    f"{label} {w:.2f}" for label, w in row["runs"][0]["weights"].items())
            if any("not_run" in run for run in row["runs"]):
                lines.append(f"| {row['label']} | {settings} | not run: "
                             f"{row['runs'][0]['not_run']} | | | | | |")
                continue
            scores = [run["nrmse"] for run in row["runs"]]
            low = np.mean([run["interval"][0] for run in row["runs"]])
            high = np.mean([run["interval"][1] for run in row["runs"]])
            lines.append(
                f"| {row['label']} | {settings} | **{np.mean(scores):.3f}** ("
                + ", ".join(f"{s:.3f}" for s in scores) + f") | {np.ptp(scores):.3f} | "
                f"{low:.3f}-{high:.3f} | "
                f"{np.mean([run['tune_nrmse'] for run in row['runs']]):.3f} | "
                + ", ".join(str(run["epochs"]) for run in row["runs"]) + " | "
                + f"{np.mean([run['seconds'] for run in row['runs']]):.0f} s |")
        lines.append("")
    return "\n".join([*lines, *_summary(results)]) + "\n"


def _summary(results: dict[str, Any]) -> list[str]:
    """Each variant's mean NRMSE on every dataset and over them: what defaults are chosen
    on, never one dataset."""
    if len(results) < 2:
        return []
    labels = list(dict.fromkeys(row["label"] for r in results.values() for row in r["rows"]))
    lines = ["**Over the datasets** (validation NRMSE, mean over seeds; the ridge on the "
             "features for reference):", "",
             "| variant | " + " | ".join(results) + " | mean |",
             "| --- |" + " --- |" * (len(results) + 1)]
    for label in [*labels, "ridge"]:
        scores = [_mean_score(r, label) for r in results.values()]
        known = [v for v in scores if v is not None]
        mean = _fixed(float(np.mean(known))) if len(known) == len(scores) else "n/a"
        lines.append(f"| {label} | " + " | ".join(_fixed(v) for v in scores) + f" | {mean} |")
    return [*lines, ""]


def _mean_score(result: dict[str, Any], label: str) -> float | None:
    if label == "ridge":
        return result["ridge"]
    row = next((row for row in result["rows"] if row["label"] == label), None)
    scores = [run["nrmse"] for run in (row or {}).get("runs", []) if "nrmse" in run]
    return float(np.mean(scores)) if scores else None


def _fixed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
