"""Show the night at a glance (make status), or follow its log (make logs). Host side.

    python jobs/status.py --work runs/2026-01-02 [--lock runs/.lock] [--follow]
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from overnight.night.status import follow, format_status, gpu_usage, night_status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path, help="the night's folder")
    parser.add_argument("--lock", type=Path, default=None,
                        help="the nights' lock: a night whose driver is gone shows as "
                             "interrupted")
    parser.add_argument("--follow", action="store_true",
                        help="print night.log as it grows until the night finishes")
    args = parser.parse_args(argv)
    if args.follow:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the following only
            follow(args.work)
        return 0
    print(format_status(night_status(args.work, lock_path=args.lock), gpu_usage()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
