"""Score every model of the night and the champion on the same validation windows;
promote through the gate."""

from __future__ import annotations

import logging
from pathlib import Path

from overnight.cli import job_parser, setup
from overnight.promotion import compare_and_promote

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, type=Path,
                        help="folder of trained models (one sub-folder each)")
    parser.add_argument("--windows", required=True, type=Path, help="window cache (HDF5)")
    parser.add_argument("--split", required=True, type=Path, help="subject split (JSON)")
    parser.add_argument("--submission", required=True, type=Path, help="submission folder")
    parser.add_argument("--out", required=True, type=Path, help="comparison JSON to write")
    parser.add_argument("--truth", type=Path, default=None,
                        help="synthetic truth.tsv, for the floor row (optional)")
    args = parser.parse_args(argv)
    config = setup(args)
    truth = args.truth if args.truth is not None and args.truth.exists() else None
    result = compare_and_promote(args.models, args.windows, args.split, args.submission,
                                 args.out, config.compare.margin, truth)
    for row in result["rows"]:
        score = "failed" if row["nrmse"] is None else f"{row['nrmse']:.4f}"
        log.info("%-16s NRMSE %s", row["name"], score)
    log.info("%s", result["decision"]["reason"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
