"""Stage compare at real size: how long it takes with every model of the night, the blend
and the permutation importance included; writes its section of docs/BENCHMARKS.md.

On `make bench-data`'s cache (41,071 simulated windows by default) every registered model is
trained for one epoch with the night's other settings (3-seed ensembles: compare's cost
grows with the members it must run, not with how well they fit), then the compare job runs
in its own process, timed. Beside it, in this process and on the same validation windows,
the permutation importance of the hybrid as compare computes it (the raw window's part once,
each shuffle read by the feature part: ``predict_feature_variants``) against the reference
it replaced, a whole pass of the model for every shuffle, timed on one shuffle and
multiplied by their number. Last, each model's scoring time per window at compare's
evaluation batch (``train.eval_batch_size``) against the 1,024 windows it used before.

Usage: python bench/compare.py --work DIR [--n 41071] [--out docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from run import REPO, features_job, machine, replace_section, run_job

from overnight.config import CompareConfig, TrainConfig
from overnight.evaluation import load_trained_model, permutation_importance, predict
from overnight.features.cache import read_features
from overnight.features.spec import FEATURE_FAMILIES
from overnight.layout import NightFolder
from overnight.models.catalog import load_catalog
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split

log = logging.getLogger("bench.compare")
CONFIG = REPO / "configs" / "bench-cpu.toml"
# One epoch each; the night's 3-seed ensembles, as compare meets them.
TRAIN = ("train.max_epochs=1", "train.ensemble=3")
TARGET_S = 60.0
# compare's scoring batch against the one it had before; timed on this many validation windows
EVAL_BATCHES = (TrainConfig().eval_batch_size, 1024)
SCORING_WINDOWS = 4096


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--n", type=int, default=41_071)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    folder = NightFolder(args.work)
    if not folder.split.exists():
        run_job("bench data", ["bench/make_data.py", "--n", str(args.n), "--out",
                               str(folder.windows), "--split-out", str(folder.split)])
    if not folder.features.exists():
        features_job(folder.windows, folder.features)
    train_every_model(folder)
    submission = args.work / "submission"
    shutil.rmtree(submission, ignore_errors=True)  # no champion: compare installs one
    stage = run_job("compare", ["jobs/compare.py", "--config", str(CONFIG), "--windows",
                                str(folder.windows), "--models", str(folder.models),
                                "--split", str(folder.split), "--submission", str(submission),
                                "--features", str(folder.features), "--out",
                                str(folder.comparison)])
    comparison = json.loads(folder.comparison.read_text())
    importance = importance_against_reference(folder)
    scored = {r["name"] for r in comparison["rows"] if r.get("nrmse") is not None}
    scoring = scoring_per_batch(folder, [n for n in load_catalog().names if n in scored])
    body = render(args, stage, comparison, importance, scoring)
    replace_section(args.out, "compare at real size", body)
    print(body)
    return 0


def train_every_model(folder: NightFolder) -> None:
    """Each registered model trained (once: a model folder already there is kept)."""
    for entry in load_catalog().entries:
        out = folder.model(entry.name)
        if not (out / "model.json").exists():
            inputs = (["--features", str(folder.features)]
                      if entry.declaration.reads_features else [])
            run_job(f"train-{entry.name}", [
                "jobs/train.py", "--config", str(CONFIG), "--windows", str(folder.windows),
                "--split", str(folder.split), "--model", entry.name, "--out", str(out),
                *inputs, *(arg for setting in TRAIN for arg in ("--set", setting))])


def importance_against_reference(folder: NightFolder) -> dict[str, Any]:
    """The hybrid's permutation importance as compare computes it, and one whole pass per
    shuffle (what it cost before), on the validation windows."""
    val = load_windows(folder.windows, read_split(folder.split)["val"])
    features, names = read_features(folder.features, val.index)
    columns = {family: [names.index(n) for n in members]
               for family, members in FEATURE_FAMILIES.items()}
    cfg = CompareConfig()
    model, _ = load_trained_model(folder.model("hybrid"))
    started = time.perf_counter()
    permutation_importance(model, val.eeg, features, val.rt.astype(np.float64), val.subject,
                           columns, cfg.bootstrap_resamples, cfg.interval_level,
                           cfg.importance_repeats, cfg.bootstrap_seed)
    fast_s = time.perf_counter() - started
    started = time.perf_counter()
    predict(model, val.eeg, features=torch.from_numpy(features))
    one_pass_s = time.perf_counter() - started
    passes = 1 + len(columns) * cfg.importance_repeats
    return {"fast_s": fast_s, "one_pass_s": one_pass_s, "passes": passes,
            "reference_s": one_pass_s * passes, "n_val": len(val.rt)}


def scoring_per_batch(folder: NightFolder, names: list[str]) -> dict[str, dict[int, float]]:
    """Milliseconds per window of each named trained model (as compare loads it: the whole
    ensemble, features computed from the window) at each batch size of EVAL_BATCHES."""
    eeg = load_windows(folder.windows, read_split(folder.split)["val"]).eeg[:SCORING_WINDOWS]
    timings: dict[str, dict[int, float]] = {}
    for name in names:
        model, _ = load_trained_model(folder.model(name))
        timings[name] = {}
        for batch in EVAL_BATCHES:
            started = time.perf_counter()
            predict(model, eeg, batch_size=batch)
            timings[name][batch] = 1000 * (time.perf_counter() - started) / len(eeg)
    return timings


def _scoring_table(scoring: dict[str, dict[int, float]]) -> list[str]:
    ours, before = EVAL_BATCHES
    rows = [f"| {name} | {ms[ours]:.3f} | {ms[before]:.3f} | {ms[before] / ms[ours]:.2f}x |"
            for name, ms in scoring.items()]
    return [f"Scoring, ms per window (the first {SCORING_WINDOWS:,} validation windows, "
            "each model whole, the features computed from the window):", "",
            f"| model | batch {ours} (compare's) | batch {before} (before) | quicker |",
            "| --- | --- | --- | --- |", *rows, ""]


def render(args: argparse.Namespace, stage: dict[str, Any], comparison: dict[str, Any],
           importance: dict[str, Any], scoring: dict[str, dict[int, float]]) -> str:
    m = machine()
    rows = [r for r in comparison["rows"] if r["kind"] == "model"]
    blend = comparison.get("blend") or {}
    weights = ", ".join(f"{n} {w:.2f}" for n, w in (blend.get("weights") or {}).items())
    ratio = importance["reference_s"] / importance["fast_s"]
    verdict = "within" if stage["seconds"] <= TARGET_S else "over"
    return "\n".join([
        "## Compare at real size", "",
        f"- command: `python bench/compare.py --work {args.work} --n {args.n}` "
        f"(`make bench-compare`), {time.strftime('%Y-%m-%d')}; config `configs/bench-cpu.toml` "
        f"with {', '.join(TRAIN)}",
        f"- machine: {m['cpu']}; {m['memory']}; GPU: {m['gpu']}; torch {torch.__version__}",
        f"- data: {args.n:,} windows, {comparison['split']['n_val_windows']:,} of them "
        f"validation; models: {', '.join(r['name'] for r in rows)}", "",
        "| figure | value |", "| --- | --- |",
        f"| compare job, wall (start-up, blend, scoring, bootstrap, importance, install) | "
        f"**{stage['seconds']:.1f} s** ({verdict} the {TARGET_S:.0f} s target), peak RSS "
        f"{stage['peak_rss_gb']:.2f} GB |",
        f"| hybrid's permutation importance, as compare computes it | "
        f"{importance['fast_s']:.1f} s |",
        f"| the same, one whole pass per shuffle (reference: {importance['passes']} passes "
        f"of {importance['one_pass_s']:.2f} s) | {importance['reference_s']:.1f} s "
        f"({ratio:.1f}x) |",
        f"| blend | {blend.get('why') or weights} |", "",
        *_scoring_table(scoring),
        f"Decision: {comparison['decision']['reason']}", "", ""])


if __name__ == "__main__":
    raise SystemExit(main())
