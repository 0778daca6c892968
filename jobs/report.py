"""Render the morning report of one night: <reports>/<date>.html and latest.html."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from overnight.champion.record import read_champion
from overnight.cli import job_parser, setup
from overnight.provenance import environment
from overnight.report.context import build_report_context
from overnight.report.render import render_report

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, type=Path, help="the night's work folder")
    parser.add_argument("--windows", required=True, type=Path, help="window cache (HDF5)")
    parser.add_argument("--reports", required=True, type=Path, help="folder of the reports")
    parser.add_argument("--date", required=True, help="the night, YYYY-MM-DD")
    parser.add_argument("--submission", type=Path, default=None,
                        help="the champion's submission folder (its history)")
    args = parser.parse_args(argv)
    setup(args)
    summary, note = _cache_summary(args.windows)
    context = build_report_context(args.work, summary, environment(), cache_note=note,
                                   champion=_champion(args.submission))
    path = render_report(context, args.reports, args.date)
    log.info("report written: %s (%s)", path, context["banner"]["headline"])
    return 0


def _cache_summary(windows: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The window-cache summary, or None and why: the report must not fail for it."""
    if not windows.is_file():
        log.warning("no window cache at %s: the report has no data section", windows)
        return None, f"window cache {windows} not found"
    try:
        from overnight.windows.cache import cache_summary

        return cache_summary(windows), None
    except Exception as exc:  # a missing or broken summary costs one section, not the report
        log.warning("cannot summarise the window cache %s", windows, exc_info=True)
        return None, f"cannot summarise {windows}: {type(exc).__name__}: {exc}"


def _champion(submission: Path | None) -> dict[str, Any] | None:
    """The champion record, or None: an unreadable one costs the history section only."""
    if submission is None:
        return None
    try:
        record = read_champion(submission)
    except (OSError, ValueError):
        log.warning("cannot read the champion record in %s", submission, exc_info=True)
        return None
    if record is not None and not isinstance(record, dict):
        log.warning("the champion record in %s is not a JSON object", submission)
        return None
    return record


if __name__ == "__main__":
    raise SystemExit(main())
