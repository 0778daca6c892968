"""Write the synthetic HBN contrast-change-detection BIDS tree (settings: ``[synth]``)."""

from __future__ import annotations

import logging
from pathlib import Path

from overnight.cli import job_parser, setup
from overnight.hbn.synth import generate_dataset

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Parse ``--out`` (BIDS root), ``--config`` and ``--set``; write the tree."""
    parser = job_parser(__doc__ or "")
    parser.add_argument("--out", type=Path, required=True,
                        help="BIDS root to write; must be empty or hold a synthetic tree")
    args = parser.parse_args(argv)
    config = setup(args)
    summary = generate_dataset(args.out, config.synth)
    log.info("synth: %d subjects, %d recordings, %d trials in %.1f s -> %s",
             summary["subjects"], summary["recordings"], summary["trials"],
             summary["seconds"], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
