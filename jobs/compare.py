"""Score every model of the night and the champion on the same validation windows;
promote through the gate."""

from __future__ import annotations

import logging
from pathlib import Path

from overnight.champion.compare import compare_and_promote
from overnight.cli import job_parser, setup

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, type=Path,
                        help="folder of trained models (one sub-folder each)")
    parser.add_argument("--windows", required=True, type=Path, help="window cache (HDF5)")
    parser.add_argument("--split", required=True, type=Path, help="subject split (JSON)")
    parser.add_argument("--submission", required=True, type=Path, help="submission folder")
    parser.add_argument("--out", required=True, type=Path, help="comparison JSON to write")
    parser.add_argument("--features", type=Path, default=None,
                        help="feature cache (HDF5): each feature family's permutation "
                             "importance for the models that read features")
    args = parser.parse_args(argv)
    config = setup(args)
    result = compare_and_promote(args.models, args.windows, args.split, args.submission,
                                 args.out, config.compare, args.features)
    for row in result["rows"]:
        score = ("not run" if row.get("not_run") else "failed" if row["nrmse"] is None
                 else f"{row['nrmse']:.4f}")
        log.info("%-16s NRMSE %s", row["name"], score)
    log.info("%s", result["decision"]["reason"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
