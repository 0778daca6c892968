"""Run one night of the chain (``make overnight``): lock, preflight, stages, compare, report.

Host side, standard library only; the Makefile passes the settings. Exit codes:
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from overnight.config import load_config
from overnight.night.container import ENGINES, GPU_KINDS
from overnight.night.driver import Night, dry_run, exit_code_table, run_night, run_preflight


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__ + "\n" + exit_code_table(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, type=Path, help="the night's folder")
    parser.add_argument("--date", required=True, help="the night, YYYY-MM-DD")
    parser.add_argument("--lock", required=True, type=Path, help="the lock file of all nights")
    parser.add_argument("--reports", required=True, type=Path, help="folder of the reports")
    parser.add_argument("--data", required=True, type=Path, nargs="+",
                        help="tonight's BIDS root(s), one per release")
    parser.add_argument("--submission", required=True, type=Path,
                        help="the champion's submission folder")
    parser.add_argument("--preflight-subjects", required=True, type=int,
                        help="subjects that must give windows in the preflight")
    parser.add_argument("--preflight-max-subjects", required=True, type=int,
                        help="subjects the preflight's slice links, read in order until "
                             "enough give windows")
    parser.add_argument("--make", required=True,
                        help="the command that runs a make target, e.g. 'make -C REPO'")
    parser.add_argument("--runner", required=True, choices=("local", *ENGINES))
    parser.add_argument("--gpu", required=True, choices=GPU_KINDS)
    parser.add_argument("--image", required=True,
                        help="the image the jobs run in (docker, podman)")
    parser.add_argument("--config", type=Path, default=None,
                        help="config file: its [night] section holds the models and the "
                             "time limits")
    parser.add_argument("--gpus", default="",
                        help="comma-separated GPU ids: one model per GPU, made in parallel")
    parser.add_argument("--fresh", action="store_true", help="start the night over")
    parser.add_argument("--preflight-only", action="store_true",
                        help="run only the preflight (make preflight)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands (make -n) instead of running them")
    args = parser.parse_args(argv)
    night = Night(work_dir=args.work, date=args.date, lock_path=args.lock,
                  reports_dir=args.reports, data=tuple(args.data),
                  submission_dir=args.submission, preflight_subjects=args.preflight_subjects,
                  preflight_max_subjects=args.preflight_max_subjects,
                  make=tuple(shlex.split(args.make)), runner=args.runner, gpu=args.gpu,
                  image=args.image, fresh=args.fresh,
                  notify_cmd=os.environ.get("NOTIFY_CMD") or None,
                  settings=load_config(args.config).night,
                  gpus=tuple(g for g in args.gpus.split(",") if g))
    if args.dry_run:
        return dry_run(night, args.preflight_only)
    return run_preflight(night) if args.preflight_only else run_night(night)


if __name__ == "__main__":
    raise SystemExit(main())
