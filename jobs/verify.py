"""Check the submission folder on demand (make verify): an interrupted install finished or
discarded, every file against its sha256 in champion.json, then the promotion check: a fresh
Python process imports it as the scorer does, its predictions match this process's, and the
input probes and Challenge 2 answer sensibly."""

from __future__ import annotations

import logging
from pathlib import Path

from overnight.champion.record import verify_submission
from overnight.cli import job_parser, setup

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--submission", required=True, type=Path, help="submission folder")
    parser.add_argument("--windows", type=Path, default=None,
                        help="window cache whose validation windows to predict (optional)")
    parser.add_argument("--split", type=Path, default=None, help="subject split (JSON)")
    args = parser.parse_args(argv)
    setup(args)
    problem = verify_submission(args.submission, args.windows, args.split)
    if problem:
        log.error("%s", problem)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
