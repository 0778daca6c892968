"""Cut a BIDS root into the Challenge 1 window cache and split its subjects.

    python jobs/windows.py --bids-root R1_L100 [R2_L100 ...] --out WINDOWS.h5 --split-out SPLIT.json
"""

from __future__ import annotations

import logging

from overnight import cli
from overnight.windows.build import build_window_cache
from overnight.windows.split import describe, write_split

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Build the window cache, then the subject-disjoint split; log a one-line summary."""
    parser = cli.job_parser("Build the Challenge 1 window cache and the subject split.")
    parser.add_argument("--bids-root", required=True, nargs="+",
                        help="BIDS root(s) with sub-*/eeg/ folders, one per release")
    parser.add_argument("--enough-subjects", type=int, default=None, metavar="N",
                        help="stop reading once N subjects gave windows (the preflight)")
    parser.add_argument("--out", required=True, help="window cache to write (.h5)")
    parser.add_argument("--split-out", required=True, help="split to write (.json)")
    args = parser.parse_args(argv)
    cfg = cli.setup(args).windows

    summary = build_window_cache(args.bids_root, args.out, cfg,
                                 enough_subjects=args.enough_subjects)
    split = write_split(args.out, args.split_out, cfg)
    log.info("windows: %d windows from %d subjects (%d recordings, %d skipped, %d duplicate, "
             "dropped trials %s) in %.1f s with %d worker(s); split %s",
             summary["n_windows"], summary["n_subjects"], summary["n_recordings"],
             summary["n_skipped"], len(summary["duplicates"]), summary["dropped_trials"],
             summary["seconds"], summary["workers"], describe(split))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
