"""Print the latest study's best values as a TOML diff against the config (make
search-defaults). Nothing is changed: a person adopts the lines, or not.

SEARCH_STORAGE (environment): the PostgreSQL study store, when the search uses one.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from overnight.cli import job_parser, setup
from overnight.search.defaults import best_as_toml, choose_study
from overnight.search.study import storage_url


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--studies", required=True, type=Path,
                        help="SEARCH_DIR: the studies' folders")
    parser.add_argument("--windows", type=Path, default=None,
                        help="a night's window cache: its data's study (else the latest)")
    parser.add_argument("--split", type=Path, default=None, help="that night's split")
    parser.add_argument("--models", type=Path, default=None,
                        help="that night's models: their tune NRMSE with the config's values")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)  # before setup's: the diff alone on stdout
    config = setup(args)
    try:
        study, place = choose_study(args.studies, storage_url(), config, args.windows,
                                    args.split)
        text = best_as_toml(study, place, config, args.config or "the defaults", args.models)
    except (FileNotFoundError, ValueError) as exc:
        print(f"make search-defaults: {exc}", file=sys.stderr)
        return 1
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
