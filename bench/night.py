"""A whole night at real scale, from BIDS recordings to the report, timed stage by stage;
writes its section of docs/BENCHMARKS.md.

The input is a synthetic tree shaped like the challenge's training data: 100 Hz BDF
recordings (the `R<n>_L100_bdf` layout), enough subjects for at least ``--windows``
windows (41,071 by default, the size the project this replaces took 99 minutes to featurise).
The night is `make overnight` itself (the preflight, every stage, compare and the report) with
`NPROC` the machine's cores, in a folder of its own with its own champion; the figures come
from its stage records and its window cache: the window stage's windows/s and recordings/s,
each stage's time, and the night's wall time, all from the same run.

Usage: python bench/night.py --work DIR [--windows 41071] [--config configs/...toml]
           [--out docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from run import REPO, machine, replace_section, run_job

from overnight.layout import STAGES, NightFolder
from overnight.night.records import stage_records
from overnight.windows.cache import cache_summary

log = logging.getLogger("bench.night")
# Windows per synthetic subject at the default 3 runs of 25 trials (the demo's 2,357 from 30).
WINDOWS_PER_SUBJECT = 78
DATE = "2026-01-01"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="folder for the tree and night")
    parser.add_argument("--windows", type=int, default=41_071, help="windows to reach at least")
    parser.add_argument("--config", type=Path, default=None,
                        help="night config (default: configs/bench-gpu.toml on a GPU, else "
                             "configs/bench-cpu.toml)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    gpu = torch.cuda.is_available()
    config = args.config or REPO / "configs" / ("bench-gpu.toml" if gpu else "bench-cpu.toml")
    tree = args.work / "bids"
    subjects = math.ceil(args.windows / WINDOWS_PER_SUBJECT)
    if not (tree / "dataset_description.json").exists():
        run_job("synth", ["jobs/synth.py", "--config", str(config), "--out", str(tree),
                          "--set", f"synth.n_subjects={subjects}", "--set", "synth.fmt='bdf'",
                          "--set", "synth.sfreq_hz=100.0"])
    result = night(args.work, tree, config, gpu)
    if result["n_windows"] < args.windows:
        log.warning("%d windows, fewer than the %d asked for", result["n_windows"], args.windows)
    (args.work / "night.json").write_text(json.dumps(result, indent=2))
    key = f"night at real scale, {result['machine']['gpu'] if gpu else 'CPU only'}"
    replace_section(args.out, key, render(key, result, " ".join(
        ["python", "bench/night.py", *(argv if argv is not None else sys.argv[1:])])))
    return 0


def night(work: Path, tree: Path, config: Path, gpu: bool) -> dict[str, Any]:
    """`make overnight` on the tree in ``work/runs``, from scratch; its figures."""
    runs = work / "runs"
    env = {**os.environ, "DATA": str(tree), "CONFIG": str(config), "RUNS": str(runs),
           "DATE": DATE, "SUBMISSION": str(work / "submission"), "REPORTS": str(work / "reports"),
           "NPROC": str(os.cpu_count() or 1), "GPU": "none"}
    folder = NightFolder(runs / DATE)
    subprocess.run(["rm", "-rf", str(runs), str(work / "submission"), str(work / "reports")],
                   check=True)
    log.info("make overnight on %s (NPROC=%s, %s)", tree, env["NPROC"], config.name)
    started = time.perf_counter()
    proc = subprocess.run(["make", "--no-print-directory", "overnight"], cwd=REPO, env=env,
                          check=False)
    wall_s = time.perf_counter() - started
    stages = {r["stage"]: r for r in stage_records(folder)}
    summary = cache_summary(folder.windows)
    windows_s = stages["windows"]["seconds"]
    comparison = json.loads(folder.comparison.read_text())
    return {"machine": machine(), "config": str(config.relative_to(REPO)), "exit": proc.returncode,
            "wall_s": round(wall_s, 1), "n_windows": summary["n_windows"],
            "n_recordings": summary["n_recordings"], "n_subjects": summary["n_subjects"],
            "nproc": int(env["NPROC"]), "gpu": gpu,
            "windows_per_s": summary["n_windows"] / windows_s,
            "recordings_per_s": summary["n_recordings"] / windows_s,
            "stages": {name: {"seconds": stages[name].get("seconds"),
                              "status": stages[name].get("status")}
                       for name in STAGES if name in stages},
            "nrmse": {r["name"]: r["nrmse"] for r in comparison["rows"]},
            "decision": comparison["decision"]["reason"]}


def render(key: str, r: dict[str, Any], command: str) -> str:
    m = r["machine"]
    lines = [f"## {key[0].upper()}{key[1:]}\n",
             f"- command: `{command}` (`make bench-night`), {time.strftime('%Y-%m-%d')}; "
             f"config `{r['config']}`; `NPROC={r['nproc']}`",
             f"- machine: {m['cpu']}; {m['memory']}; GPU: {m['gpu']}; torch {m['torch']}",
             f"- data: {r['n_recordings']:,} synthetic 100 Hz BDF recordings of "
             f"{r['n_subjects']} subjects, {r['n_windows']:,} windows",
             f"- the night: exit {r['exit']}, **{r['wall_s'] / 60:.1f} min** wall "
             "(`make overnight`, preflight included); window stage "
             f"**{r['windows_per_s']:,.0f} windows/s, {r['recordings_per_s']:.1f} "
             "recordings/s**", "",
             "| stage | status | seconds |", "| --- | --- | --- |"]
    for name, stage in r["stages"].items():
        seconds = stage["seconds"]
        lines.append(f"| {name} | {stage['status']} | "
                     f"{'' if seconds is None else f'{seconds:.1f}'} |")
    scores = ", ".join(f"{k} {v:.3f}" for k, v in r["nrmse"].items() if v is not None)
    lines += ["", f"Validation NRMSE: {scores}. Decision: {r['decision']}", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
