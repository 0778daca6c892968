"""Compute the per-window feature cache from a window cache (``make features``)."""

from __future__ import annotations

import logging
from pathlib import Path

from overnight.cli import job_parser, setup
from overnight.features.cache import build_feature_cache

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the feature cache, log a summary."""
    parser = job_parser(__doc__)
    parser.add_argument("--windows", type=Path, required=True, metavar="FILE.h5",
                        help="window cache (HDF5 with dataset 'eeg')")
    parser.add_argument("--out", type=Path, required=True, metavar="FILE.h5",
                        help="feature cache to write")
    args = parser.parse_args(argv)
    config = setup(args)
    summary = build_feature_cache(args.windows, args.out, config.features)
    log.info("features: %d windows, compile %.2f s, compute %.2f s (%.0f windows/s) -> %s",
             summary["n_windows"], summary["compile_s"], summary["compute_s"],
             summary["windows_per_s"], summary["out"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
