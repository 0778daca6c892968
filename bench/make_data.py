"""Write a real-size window cache of simulated windows, without BIDS (``make bench-data``).

Same HDF5 layout as the window stage's cache, same generator physiology; 41,071 windows
(HBN R1-R4) by default. Also writes the subject split beside it.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from overnight.cli import progress
from overnight.config import WindowsConfig
from overnight.hbn.synth import simulated_cache_chunks
from overnight.windows.cache import write_cache_from_chunks
from overnight.windows.split import describe, write_split

log = logging.getLogger("bench.make_data")
CHUNK_WINDOWS = 4096


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=41_071, help="number of windows")
    parser.add_argument("--out", type=Path, required=True, help="window cache to write (.h5)")
    parser.add_argument("--split-out", type=Path, required=True, help="split JSON to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(message)s")
    started = time.perf_counter()
    cfg = WindowsConfig()
    chunks = simulated_cache_chunks(args.n, chunk_windows=CHUNK_WINDOWS, seed=args.seed,
                                    margin_s=cfg.margin_s)
    n = write_cache_from_chunks(args.out, progress(chunks, total=-(-args.n // CHUNK_WINDOWS),
                                                   desc="bench data", unit="chunk"),
                                cfg, source=f"simulated windows (seed {args.seed})")
    split = write_split(args.out, args.split_out, cfg)
    log.info("%d windows (%s) in %.1f s -> %s", n, describe(split),
             time.perf_counter() - started, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
