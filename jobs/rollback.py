"""Make a trained model champion again (the night's baseline, or the folder of a recorded
champion) and regenerate the submission."""

from __future__ import annotations

import logging
from pathlib import Path

from overnight.champion.compare import rollback
from overnight.cli import job_parser, setup

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__)
    parser.add_argument("--model", required=True, type=Path,
                        help="folder of the trained model (model.json, model.pt)")
    parser.add_argument("--windows", required=True, type=Path, help="window cache (HDF5)")
    parser.add_argument("--split", required=True, type=Path, help="subject split (JSON)")
    parser.add_argument("--submission", required=True, type=Path, help="submission folder")
    args = parser.parse_args(argv)
    setup(args)
    record = rollback(args.model, args.windows, args.split, args.submission)
    log.info("champion is now %s (NRMSE %.4f): %s", record["model"], record["nrmse"],
             ", ".join(f"{name} {digest[:12]}" for name, digest in record["files"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
