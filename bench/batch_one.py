"""The scorer's loop, timed: each trained model's submission fed one window at a time (batch
size 1, ``model.forward``, ``[0][0]``), on one CPU thread and with torch's default threads,
in the scorer's environment (make scorer-env) and in the project's; the reference in the
same run is the same submission's time per window in batches of 256. Writes its section of
docs/BENCHMARKS.md.

Usage: python bench/batch_one.py --models DIR [--windows 64] [--out docs/BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from run import REPO, machine, replace_section

from overnight.champion.scorer_env import scorer_python
from overnight.champion.submission import build_submission

_TIMER = """
import json, sys, time
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
import numpy as np, torch
from fresh_process_check import predict_batched, time_batch_one
from submission import Submission
x = torch.from_numpy(np.random.default_rng(0).normal(0, 1e-5, (int(sys.argv[3]), 129, 200))
                     .astype(np.float32))
model = Submission(100, torch.device("cpu")).get_model_challenge_1().eval()
batched = torch.cat([x] * 4)
predict_batched(model, batched[:256])
start = time.perf_counter(); predict_batched(model, batched)
out = time_batch_one(model, x)
out["batched_256"] = 1e3 * (time.perf_counter() - start) / len(batched)
out["torch"] = torch.__version__
print(json.dumps(out))
"""


def time_submission(python: Path, submission_dir: Path, n_windows: int) -> dict:
    check_dir = REPO / "lib" / "overnight" / "champion"
    proc = subprocess.run([str(python), "-I", "-c", _TIMER, str(check_dir), str(submission_dir),
                           str(n_windows)], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True, help="trained models' folder")
    parser.add_argument("--windows", type=int, default=64)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    args = parser.parse_args()
    pythons = {"project": Path(sys.executable)}
    if scorer_python() is not None:
        pythons["scorer"] = scorer_python()
    lines = ["| model | environment | torch | batch 1, 1 thread (ms) | batch 1, default threads "
             "(ms) | batches of 256 (ms per window) | batch 1 / batched |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        for model_dir in sorted(p.parent for p in args.models.glob("*/model.pt")):
            sub = Path(tmp) / model_dir.name
            build_submission(model_dir, sub)
            for env, python in pythons.items():
                t = time_submission(python, sub, args.windows)
                lines.append(f"| {model_dir.name} | {env} | {t['torch']} | "
                             f"{t['cpu_1_thread']:.2f} | {t['cpu_default_threads']:.2f} "
                             f"({t['default_threads']}) | {t['batched_256']:.2f} | "
                             f"{t['cpu_1_thread'] / t['batched_256']:.1f}x |")
                print(lines[-1], flush=True)
    info = machine()
    body = (f"## The scorer's loop: time per window at batch size 1\n\n"
            f"- command: `python bench/batch_one.py --models {args.models} --windows "
            f"{args.windows}` (`make bench-batch-one`)\n- machine: {info['cpu']}; "
            f"project torch {info['torch']}\n- {args.windows} noise windows at EEG scale, one "
            "at a time after 2 warm-up calls; the submissions as the night ships them\n\n"
            + "\n".join(lines) + "\n\n")
    replace_section(args.out, "batch one", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
