"""Shared input checks for the public API: the message names the parameter and the bad value."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def as_path(value: Any, name: str) -> Path:
    """``value`` as a Path; TypeError naming ``name`` when it is not a str or PathLike."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name}={value!r}: expected a path (str or os.PathLike)")
    return Path(value)
