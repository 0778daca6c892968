"""Check, after the preflight, that the night's file systems have room for what it will
write; fail with what is short where (host side, standard library only)."""

from __future__ import annotations

import argparse
from pathlib import Path

from overnight.atomic import format_bytes
from overnight.layout import NightFolder
from overnight.night.disk import night_needs, shortfalls
from overnight.night.preflight import count_subjects


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preflight", required=True, type=Path, help="the preflight's folder")
    parser.add_argument("--data", required=True, type=Path, nargs="+",
                        help="tonight's BIDS roots")
    parser.add_argument("--work", required=True, type=Path, help="the night's folder")
    parser.add_argument("--reports", required=True, type=Path, help="folder of the reports")
    parser.add_argument("--submission", required=True, type=Path, help="submission folder")
    args = parser.parse_args(argv)
    n_subjects = count_subjects(args.data)
    needs = night_needs(NightFolder(args.preflight), n_subjects)
    print(f"{n_subjects} subjects tonight; the night will write about "
          + ", ".join(f"{name} {format_bytes(need)}" for name, need in needs.items()),
          flush=True)
    short = shortfalls(needs, {"work": args.work, "reports": args.reports,
                               "submission": args.submission})
    if short:
        raise SystemExit("not enough disk space: " + "; ".join(short)
                         + ". Free space, or point RUNS, REPORTS or SUBMISSION at a larger "
                           "disk, then run make overnight again")
    print("disk space: enough on every file system", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
