"""Which model and which input scaling hold up on subjects they never saw; writes the
"Models" section of docs/BENCHMARKS.md.

On two synthetic datasets, the demo's and the harder setting (configs/synth-hard.toml:
fewer subjects, weaker task signals, subjects that differ more), every model variant is
trained with several seeds on the same subject-disjoint split, then scored on the
validation windows with the 90 % interval of the subject bootstrap that the compare stage
uses. The seed spread and the interval are the noise any difference is read against.

Usage: python bench/models.py --work DIR [--seeds 3] [--out docs/BENCHMARKS.md]
                              [--variants eegnex:train,baseline:train --section models-eegnex]

A model that cannot be built here (EEGNeX without braindecode) is a row that says why.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from run import REPO, machine, replace_section, run_job

from overnight.config import CompareConfig
from overnight.evaluation import (
    floor_predictions,
    interval,
    load_trained_model,
    nrmse,
    predict,
    subject_bootstrap,
)
from overnight.layout import NightFolder
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split

log = logging.getLogger("bench.models")
DATASETS = {"demo": REPO / "configs" / "demo.toml", "hard": REPO / "configs" / "synth-hard.toml"}
VARIANTS = [("baseline", "train"), ("hybrid", "train"), ("press", "train"),
            ("press-hybrid", "train"), ("baseline", "window"), ("hybrid", "window"),
            ("press", "window"), ("eegnex", "train")]
TRUTH = Path("derivatives") / "synth" / "truth.tsv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for data and models")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per variant")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    parser.add_argument("--variants", type=_variants, default=VARIANTS,
                        help="model:normalization,... (default: every variant)")
    parser.add_argument("--section", default="models",
                        help="the section of --out to write (one per machine or subset)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    results = {name: dataset_results(args.work / name, config, args.seeds, args.variants)
               for name, config in DATASETS.items()}
    (args.work / f"{args.section}.json").write_text(json.dumps(results, indent=2))
    section = render(results, args.seeds, " ".join(["python", "bench/models.py", *(argv or [])]),
                     args.section)
    replace_section(args.out, args.section, section)
    print(section)
    return 0


def _variants(text: str) -> list[tuple[str, str]]:
    pairs = [tuple(item.split(":", 1)) for item in text.split(",") if item]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise argparse.ArgumentTypeError(f"{text!r}: expected model:normalization,...")
    return pairs


def dataset_results(work: Path, config: Path, seeds: int,
                    variants: list[tuple[str, str]]) -> dict[str, Any]:
    """Prepare one dataset's windows and features, train every variant, score them."""
    folder, bids = NightFolder(work), work / "bids"
    common = ["--config", str(config)]
    if not (bids / "dataset_description.json").exists():
        run_job(f"{work.name}: synth", ["jobs/synth.py", *common, "--out", str(bids)])
    if not folder.split.exists():
        run_job(f"{work.name}: windows", ["jobs/windows.py", *common, "--bids-root", str(bids),
                                          "--out", str(folder.windows),
                                          "--split-out", str(folder.split)])
    if not folder.features.exists():
        run_job(f"{work.name}: features", ["jobs/features.py", *common, "--windows",
                                           str(folder.windows), "--out", str(folder.features)])
    split = read_split(folder.split)
    val = load_windows(folder.windows, split["val"])
    y_true = val.rt.astype(np.float64)
    cfg = CompareConfig()
    rows = []
    for model, normalization in variants:
        runs = []
        for seed in range(seeds):
            out = folder.models / f"{model}-{normalization}-seed{seed}"
            if not (out / "model.json").exists():
                run_job(f"{work.name}: {out.name}", [
                    "jobs/train.py", *common, "--model", model, "--windows",
                    str(folder.windows), "--split", str(folder.split), "--features",
                    str(folder.features), "--out", str(out), "--set", f"train.seed={seed}",
                    "--set", f"train.normalization='{normalization}'"])
            not_run = json.loads((out / "model.json").read_text()).get("not_run")
            if not_run:
                runs.append({"seed": seed, "not_run": not_run})
                continue
            trained, meta = load_trained_model(out)
            pred = predict(trained, val.eeg)
            boot = subject_bootstrap(y_true, {"m": pred}, val.subject, cfg.bootstrap_resamples,
                                     cfg.bootstrap_seed)["m"]
            runs.append({"seed": seed, "nrmse": nrmse(y_true, pred),
                         "interval": interval(boot, cfg.interval_level),
                         "epochs": meta["epochs_run"], "seconds": meta["train_seconds"]})
        rows.append({"model": model, "normalization": normalization, "runs": runs})
    truth = floor_predictions(work / "bids" / TRUTH, val.subject, val.run, val.trial)
    return {"n_train_subjects": len(split["train"]), "n_val_subjects": len(split["val"]),
            "n_val_windows": len(y_true), "rows": rows,
            "floor": nrmse(y_true, truth) if truth is not None else None}


def render(results: dict[str, Any], seeds: int, command: str, section: str) -> str:
    m = machine()
    lines = [
        "## Models: which holds up on new subjects"
        + ("" if section == "models" else f" ({section})") + "\n",
        f"- command: `{command}` (`make bench-models`), {time.strftime('%Y-%m-%d')}",
        f"- machine: {m['cpu']}; GPU: {m['gpu']}; torch {m['torch']}",
        f"- {seeds} seeds per variant; NRMSE on the validation subjects (mean over seeds, "
        "each seed in brackets); interval: 90 % subject bootstrap of each seed's model, "
        "averaged over seeds",
        "",
    ]
    for name, r in results.items():
        lines += [f"**{name}** ({DATASETS[name].relative_to(REPO)}): {r['n_train_subjects']} "
                  f"training subjects, {r['n_val_subjects']} validation subjects, "
                  f"{r['n_val_windows']} validation windows; floor "
                  f"{_fixed(r['floor'])}.", "",
                  "| model | normalization | NRMSE (seeds) | 90 % interval | epochs | training |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for row in r["rows"]:
            if any("not_run" in run for run in row["runs"]):
                lines.append(f"| {row['model']} | {row['normalization']} | not run: "
                             f"{row['runs'][0]['not_run']} | | | |")
                continue
            scores = [run["nrmse"] for run in row["runs"]]
            low = np.mean([run["interval"][0] for run in row["runs"]])
            high = np.mean([run["interval"][1] for run in row["runs"]])
            lines.append(
                f"| {row['model']} | {row['normalization']} | **{np.mean(scores):.3f}** ("
                + ", ".join(f"{s:.3f}" for s in scores) + f") | {low:.3f}-{high:.3f} | "
                + ", ".join(str(run["epochs"]) for run in row["runs"]) + " | "
                + f"{np.mean([run['seconds'] for run in row['runs']]):.0f} s |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _fixed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
