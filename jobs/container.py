"""The container runner for the Makefile: print the job prefix, or check that it can run.

    python jobs/container.py prefix --engine podman --gpu amd --image overnight:rocm \
        --ro DATA --rw WORK ...
    python jobs/container.py check --engine docker --gpu amd --image overnight:rocm

``prefix`` prints the ``<engine> run ... python`` words (shell-quoted) that go in front of a
job; it runs nothing, so ``make -n`` can show it. ``check`` exits 1 with the fix when the
engine, its daemon or socket, the permission to use it, the image or the GPU devices are
missing. Standard library only (host side).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from overnight.night.container import (
    ENGINES,
    GPU_KINDS,
    check_engine,
    container_prefix,
    shell_words,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("prefix", "check"))
    parser.add_argument("--engine", required=True, choices=ENGINES, help="container engine")
    parser.add_argument("--gpu", required=True, choices=GPU_KINDS, help="GPU kind")
    parser.add_argument("--image", required=True, help="image to run, e.g. overnight:rocm")
    parser.add_argument("--repo", type=Path, default=Path.cwd(),
                        help="the checkout (default: the current folder)")
    parser.add_argument("--ro", action="append", default=[], metavar="PATH",
                        help="mount read-only (repeatable): the input data")
    parser.add_argument("--rw", action="append", default=[], metavar="PATH",
                        help="mount read-write (repeatable): the night folder, reports, ...")
    parser.add_argument("--host-network", action="store_true",
                        help="the host's network (training across nodes)")
    args = parser.parse_args(argv)
    if args.action == "check":
        problem = check_engine(args.engine, args.image, args.gpu)
        if problem:
            print(f"RUNNER={args.engine}: {problem}", file=sys.stderr)
            return 1
        print(f"RUNNER={args.engine}: {args.engine} and image {args.image} ready "
              f"(GPU={args.gpu})")
        return 0
    print(shell_words(container_prefix(args.engine, args.gpu, args.image, args.repo, args.ro,
                                       args.rw, host_network=args.host_network)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
