"""Link a few subjects of tonight's BIDS root into the preflight's slice (host side).

    python jobs/preflight_slice.py --bids-root DATA --out WORK/preflight/bids --subjects 3
"""

from __future__ import annotations

import argparse
from pathlib import Path

from overnight.preflight import make_slice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bids-root", required=True, type=Path, help="tonight's BIDS root")
    parser.add_argument("--out", required=True, type=Path, help="the slice to write")
    parser.add_argument("--subjects", type=int, default=3,
                        help="subjects in the slice, at least 2 (default 3)")
    args = parser.parse_args(argv)
    summary = make_slice(args.bids_root, args.out, args.subjects)
    print(f"preflight slice: {len(summary['subjects'])} subjects "
          f"({', '.join(summary['subjects'])}), {summary['n_recordings']} recordings "
          f"-> {summary['out']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
