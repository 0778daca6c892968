"""Run one stage of the chain with its log and status record.

Usage: python jobs/run_stage.py --work DIR STAGE -- COMMAND...
"""

from __future__ import annotations

import argparse
from pathlib import Path

from overnight.layout import NightFolder
from overnight.night.runner import run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path, help="the night's work folder")
    parser.add_argument("stage", help="stage name, e.g. windows")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the job's command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the job's command after --")
    return run_stage(args.stage, command, NightFolder(args.work))


if __name__ == "__main__":
    raise SystemExit(main())
