"""Stage search: an Optuna study of the [train] settings until the search's end, then its
best trial as the model models/search (compare scores it like any model).

The stage runs one worker per GPU (--gpus), each this script with --worker-index; a worker
started by hand (make search-workers, on another host with SEARCH_STORAGE) joins the same
study. SEARCH_STORAGE (environment): a PostgreSQL URL shared by several hosts; unset, the
study is a journal file in --studies.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from overnight.cli import job_parser, setup
from overnight.search.stage import progress_writer, run_search, search_end
from overnight.search.study import StudyPlace, night_study_name, storage_url
from overnight.search.worker import Inputs, run_worker

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--windows", required=True, type=Path, help="window cache (HDF5)")
    parser.add_argument("--split", required=True, type=Path, help="subject split (JSON)")
    parser.add_argument("--features", type=Path, default=None,
                        help="feature cache (HDF5), for the families that read features")
    parser.add_argument("--out", required=True, type=Path,
                        help="the model folder to write (models/search)")
    parser.add_argument("--records", required=True, type=Path,
                        help="the night's search folder: summary.json, progress.json")
    parser.add_argument("--studies", required=True, type=Path,
                        help="SEARCH_DIR: one folder per study, beside the night folders")
    parser.add_argument("--deadline", type=float, default=None,
                        help="the night's deadline, epoch seconds (the night driver's)")
    parser.add_argument("--gpus", default="", help="comma-separated GPU ids: one worker each")
    parser.add_argument("--workers-only", action="store_true",
                        help="only this host's workers, for the night's study (make "
                             "search-workers): no model, no summary")
    worker = parser.add_argument_group("one worker (the stage starts them)")
    worker.add_argument("--worker-index", type=int, default=None)
    worker.add_argument("--workers", type=int, default=1)
    worker.add_argument("--end", type=float, default=None, help="epoch seconds")
    worker.add_argument("--since", type=float, default=None, help="epoch seconds")
    args = parser.parse_args(argv)
    config = setup(args)
    inputs = Inputs(args.windows, args.split, args.features)
    storage = storage_url()
    if args.worker_index is None:
        command = [sys.executable, str(Path(__file__).resolve()), *_shared(argv)]
        summary = run_search(inputs, args.out, args.records, args.studies, config, command,
                             args.deadline, [g for g in args.gpus.split(",") if g], storage,
                             args.workers_only)
        for error in summary.get("worker_errors") or []:
            log.error("%s", error)
        return 1 if summary.get("worker_errors") else 0
    since = time.time() if args.since is None else args.since
    end = args.end if args.end is not None else search_end(config, since, args.deadline)
    name, _ = night_study_name(args.windows, args.split, config)
    place = StudyPlace(name, args.studies / name, storage)
    finished = run_worker(inputs, place, config, end, since, args.worker_index, args.workers,
                          progress_writer(args.records / "progress.json", place, end, since))
    log.info("worker %d: %d trial(s) finished", args.worker_index, finished)
    return 0


def _shared(argv: list[str] | None) -> list[str]:
    """This job's own arguments, for its workers (the same config, caches and study)."""
    return list(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
