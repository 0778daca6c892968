"""Run one night of the chain (``make overnight``): lock, preflight, stages, compare, report.

Host side, standard library only; the Makefile passes the settings. Exit codes:
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from overnight.night import Night, dry_run, exit_code_table, run_night


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__ + "\n" + exit_code_table(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, type=Path, help="the night's folder")
    parser.add_argument("--date", required=True, help="the night, YYYY-MM-DD")
    parser.add_argument("--lock", required=True, type=Path, help="the lock file of all nights")
    parser.add_argument("--reports", required=True, type=Path, help="folder of the reports")
    parser.add_argument("--make", default="make --no-print-directory",
                        help="the command that runs a make target (default: %(default)s)")
    parser.add_argument("--runner", choices=("local", "docker"), default="local")
    parser.add_argument("--fresh", action="store_true", help="start the night over")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the commands (make -n) instead of running them")
    parser.add_argument("--exit-file", type=Path, default=None,
                        help="also write the exit code here (make itself only exits 0 or 2)")
    args = parser.parse_args(argv)
    night = Night(work_dir=args.work, date=args.date, lock_path=args.lock,
                  reports_dir=args.reports, make=tuple(shlex.split(args.make)),
                  runner=args.runner, fresh=args.fresh,
                  notify_cmd=os.environ.get("NOTIFY_CMD") or None)
    code = dry_run(night) if args.dry_run else run_night(night)
    if args.exit_file is not None:
        args.exit_file.write_text(f"{code}\n", encoding="utf-8")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
