"""What every job entry point shares: arguments, logging and progress bars."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from overnight.config import Config, load_config

T = TypeVar("T")
log = logging.getLogger("overnight")


def job_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every job takes (``--config``, ``--set``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", default=None,
                        help="TOML file with settings that differ from the defaults")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="override one setting, e.g. --set train.max_epochs=5 (repeatable)")
    return parser


def setup(args: argparse.Namespace) -> Config:
    """Configure timestamped logging and resolve the job's config from its arguments."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%Y-%m-%d %H:%M:%S")
    config = load_config(args.config, args.overrides)
    log.info("config: %s", config.to_dict())
    return config


def progress(items: Iterable[T], total: int | None = None, desc: str = "",
             unit: str = "it", status: Callable[[], str] | None = None) -> Iterator[T]:
    """A tqdm bar on a terminal; in a log file, a line every 30 s instead of a redraw.

    ``status`` (called after each item) adds a text after the bar, e.g. ``1,234 windows``.
    """
    from tqdm import tqdm

    with tqdm(items, total=total, desc=desc, unit=unit, **_bar_style()) as bar:
        for item in bar:
            yield item
            if status is not None:
                bar.set_postfix_str(status(), refresh=False)


def byte_progress(total_bytes: int, desc: str = "") -> Any:
    """A tqdm bar in bytes (kB, MB, GB), styled as ``progress``; the caller updates it
    (``bar.update(n)``) and closes it, e.g. ``with byte_progress(n) as bar:``."""
    from tqdm import tqdm

    return tqdm(total=total_bytes, desc=desc, unit="B", unit_scale=True, **_bar_style())


def _bar_style() -> dict[str, Any]:
    """A redraw every 0.5 s on a terminal; in a log file, a line every 30 s."""
    interactive = sys.stderr.isatty()
    return {"file": sys.stderr, "mininterval": 0.5 if interactive else 30.0,
            "ascii": not interactive, "dynamic_ncols": interactive}
