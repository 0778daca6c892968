"""Check the night's models before it trains them: each imports, builds at the night's
window geometry, keeps its output guards and computes its loss; a model of your own also
ships as a submission that runs in a fresh process. One line per fault, naming the file."""

from __future__ import annotations

import logging

from overnight.champion.model_check import check_models
from overnight.cli import job_parser, setup
from overnight.models.catalog import load_catalog

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    args = job_parser(__doc__).parse_args(argv)
    config = setup(args)
    try:
        entries = list(load_catalog(config.night).night_entries())
    except ValueError as exc:
        log.error("%s", exc)
        return 1
    passed, faults = check_models(entries, config)
    for line in passed:
        log.info("%s", line)
    for line in faults:  # last: the stage's error line is the last one
        log.error("%s", line)
    return 1 if faults else 0


if __name__ == "__main__":
    raise SystemExit(main())
