"""Peak memory of every stage at a given size (default 114,000 windows: all of R1-R11).

Writes the cache, then runs the chain (features, both trainings for one epoch, compare,
report), each stage in its own process, and adds a section to docs/BENCHMARKS.md.

Usage: python bench/memory.py --work DIR [--n 114000]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from run import REPO, chain, machine, replace_section, run_job

from overnight.layout import STAGES, NightFolder

# The stages after the window cache (which the bench data stands in for).
CHAIN = STAGES[STAGES.index("features"):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--n", type=int, default=114_000)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "BENCHMARKS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args.work.mkdir(parents=True, exist_ok=True)
    windows, split = NightFolder(args.work).windows, NightFolder(args.work).split
    data = run_job("bench data", ["bench/make_data.py", "--n", str(args.n), "--out",
                                  str(windows), "--split-out", str(split)])
    config = REPO / "configs" / "bench-cpu.toml"
    result = chain(args.work, windows, split, config, ("train.max_epochs=1",))
    m = machine()
    key = f"memory at {args.n:,} windows"
    lines = [f"## Peak memory at {args.n:,} windows", "",
             f"- command: `python bench/memory.py --work {args.work} --n {args.n}`, "
             f"{time.strftime('%Y-%m-%d')}; one training epoch each (memory, not speed)",
             f"- machine: {m['cpu']}; {m['memory']}; GPU: {m['gpu']}", "",
             "| stage | seconds | peak RSS |", "| --- | --- | --- |",
             f"| bench data | {data['seconds']:.1f} | {data['peak_rss_gb']:.2f} GB |"]
    lines += [f"| {s} | {result[s]['seconds']:.1f} | {result[s]['peak_rss_gb']:.2f} GB |"
              for s in CHAIN]
    body = "\n".join([*lines, "", ""])
    replace_section(args.out, key, body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
