"""Join window caches built apart (one per release) into one, without copying the windows
(an HDF5 virtual dataset), and split its subjects."""

from __future__ import annotations

import logging
from pathlib import Path

from overnight.cli import job_parser, setup
from overnight.windows.cache import join_caches
from overnight.windows.split import describe, write_split

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--parts", required=True, type=Path, nargs="+",
                        help="the window caches to join (.h5), in order")
    parser.add_argument("--out", required=True, type=Path, help="joined cache to write (.h5)")
    parser.add_argument("--split-out", required=True, type=Path, help="split to write (.json)")
    args = parser.parse_args(argv)
    config = setup(args)
    n_windows = join_caches(args.parts, args.out)
    split = write_split(args.out, args.split_out, config.windows)
    log.info("joined %d caches: %d windows -> %s; split %s", len(args.parts), n_windows,
             args.out, describe(split))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
