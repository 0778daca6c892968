"""Score a submission zip on a BIDS release as the challenge's scorer would (make score): the
zip unpacked flat, both challenges called one window at a time in the scorer's environment
(make scorer-env), then the NRMSEs, the overall score, the time per window and peak memory."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from overnight import atomic
from overnight.champion.score import ScoreError, score_zip, summary_lines
from overnight.champion.submission import ZIP_FILE
from overnight.cli import job_parser, setup

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    parser = job_parser(__doc__.splitlines()[0])
    parser.add_argument("--zip", required=True, type=Path,
                        help=f"the submission zip, or a submission folder (its {ZIP_FILE})")
    parser.add_argument("--data", required=True, type=Path, nargs="+",
                        help="BIDS release(s) to score on")
    parser.add_argument("--out", type=Path, default=None, help="also write the result (JSON)")
    args = parser.parse_args(argv)
    cfg = setup(args)
    zip_path = args.zip / ZIP_FILE if args.zip.is_dir() else args.zip
    with tempfile.TemporaryDirectory(prefix="overnight-score-") as work:
        try:
            result = score_zip(zip_path, args.data, cfg.windows, Path(work))
        except ScoreError as exc:
            log.error("%s", exc)
            return 1
    for line in summary_lines(result):
        print(line)
    if args.out is not None:
        atomic.write_json(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
