"""Fetch HBN releases from their public bucket, one BIDS folder per release (make data).

    python jobs/download.py --releases R1 R5 [--mini] [--source challenge|openneuro]
        [--tasks contrastChangeDetection ... | all] --out data
"""

from __future__ import annotations

import logging
from pathlib import Path

from overnight import cli
from overnight.atomic import format_bytes
from overnight.hbn.download import ALL_TASKS, DEFAULT_TASKS, DownloadError, download_releases
from overnight.hbn.releases import RELEASES, SOURCES, locate_release

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Fetch the releases; on an error, one line saying what and what to do, exit code 1."""
    parser = cli.job_parser(__doc__.splitlines()[0])
    parser.add_argument("--releases", required=True, nargs="+", metavar="RELEASE",
                        help=f"one or more of {', '.join(RELEASES)}")
    parser.add_argument("--mini", action="store_true",
                        help="the challenge's 20-subject copies (EEG2025r<n>mini)")
    parser.add_argument("--source", choices=SOURCES, default=SOURCES[0],
                        help="challenge: the 100 Hz BDF copies (EEG2025r<n>); openneuro: the "
                             "500 Hz EEGLAB originals (ds0055xx)")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), metavar="TASK",
                        help=f"BIDS tasks whose files to fetch, or {ALL_TASKS} "
                             f"(default: {' '.join(DEFAULT_TASKS)})")
    parser.add_argument("--out", required=True, type=Path,
                        help="data folder: each release goes to a folder of its own in it")
    args = parser.parse_args(argv)
    cfg = cli.setup(args).data

    try:
        locations = [locate_release(r, args.source, args.mini) for r in args.releases]
        summaries = download_releases(locations, args.out, cfg, args.tasks)
    except (DownloadError, OSError, ValueError) as exc:  # DiskFullError is an OSError
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted: the files in place are kept; run again to fetch the rest")
        return 130
    for s in summaries:
        log.info("%s: %d files in %s (%d already whole, %d fetched, %s)", s["release"],
                 s["selected"], s["folder"], s["kept"], s["fetched"],
                 format_bytes(s["fetched_bytes"]))
    log.info("for make overnight: DATA=\"%s\"", " ".join(s["folder"] for s in summaries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
