"""Run one stage of the chain with its log and status record.

Usage: python jobs/run_stage.py --work DIR [--config FILE] [--deadline EPOCH] STAGE -- COMMAND...

The stage's time limit is its ``[night]`` setting in the config, cut to the night's deadline;
with ``--gpus``, a training stage runs pinned to one of them that no other stage holds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from overnight.config import load_config
from overnight.layout import TRAIN_PREFIX, NightFolder
from overnight.night.runner import run_stage, stage_time_limit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path, help="the night's work folder")
    parser.add_argument("--config", type=Path, default=None,
                        help="config file: its [night] section holds the time limits")
    parser.add_argument("--deadline", type=float, default=None,
                        help="when the night's time is up, epoch seconds (the night driver)")
    parser.add_argument("--gpus", default="",
                        help="comma-separated GPU ids: a training stage runs pinned to a free one")
    parser.add_argument("stage", help="stage name, e.g. windows")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the job's command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the job's command after --")
    limit = stage_time_limit(args.stage, load_config(args.config).night, args.deadline)
    gpus = [g for g in args.gpus.split(",") if g] if args.stage.startswith(TRAIN_PREFIX) else []
    return run_stage(args.stage, command, NightFolder(args.work), limit=limit, gpus=gpus)


if __name__ == "__main__":
    raise SystemExit(main())
