"""Shared input checks for the public API: the message names the parameter, shows the bad
value and says what is allowed. TypeError for types, ValueError for values. Standard library
only (the host side uses it too)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def as_path(value: Any, name: str) -> Path:
    """``value`` as a Path; TypeError naming ``name`` when it is not a str or PathLike."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}={value!r}: expected a path (str or os.PathLike)")
    return Path(value)


def existing_file(value: Any, name: str) -> Path:
    """``value`` as a Path to a file that exists; FileNotFoundError naming ``name`` if not."""
    path = as_path(value, name)
    if not path.is_file():
        raise FileNotFoundError(f"{name}={str(path)!r}: no such file")
    return path


def absolute(value: Any, name: str, base: Path | None = None) -> Path:
    """``value`` as an absolute, normalised path (relative to ``base``, default the working
    directory), with symlinks kept: a linked data folder keeps the name the jobs are given."""
    path = as_path(value, name)
    if not path.is_absolute():
        path = (base if base is not None else Path.cwd()) / path
    return Path(os.path.normpath(path))


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """``value`` when it is an int in ``minimum..maximum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}={value!r}: expected an int")
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{name}={value!r}: expected >= {minimum}{upper}")
    return value
