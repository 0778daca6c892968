"""Rendering the report: the Jinja2 template, its filters, and the atomic write of
``<reports>/<date>.html`` and ``<reports>/latest.html``."""

from __future__ import annotations

import contextlib
import os
import re
from datetime import date as Date
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from overnight.atomic import write_text
from overnight.checks import as_path
from overnight.night.runner import duration_text
from overnight.report.context import CONTEXT_KEYS

TEMPLATE = "report.html.j2"
_TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


def render_report(context: dict[str, Any], reports_dir: str | os.PathLike[str],
                  date: str) -> Path:
    """Render the report and write ``<date>.html`` and ``latest.html``, each atomically.

    Parameters
    ----------
    context : dict
        From ``build_report_context``.
    reports_dir : str or path-like
        Folder of the reports; created when missing.
    date : str
        The night, ``YYYY-MM-DD``; names the file and heads the banner.

    Returns
    -------
    Path
        The dated report.

    Raises
    ------
    TypeError
        An argument of the wrong type.
    ValueError
        ``context`` lacks a section, or ``date`` is not a valid ``YYYY-MM-DD`` date.
    """
    if not isinstance(context, dict):
        raise TypeError(f"context must be a dict, got {type(context).__name__}")
    missing = [key for key in CONTEXT_KEYS if key not in context]
    if missing:
        raise ValueError(f"context lacks section(s) {missing}; build it with "
                         f"build_report_context (sections: {list(CONTEXT_KEYS)})")
    reports_dir = as_path(reports_dir, "reports_dir")
    _check_date(date)
    html = _jinja_environment().get_template(TEMPLATE).render(ctx=context, date=date)
    target = reports_dir / f"{date}.html"
    write_text(target, html)
    write_text(reports_dir / "latest.html", html)
    return target


def _check_date(date: Any) -> None:
    if not isinstance(date, str):
        raise TypeError(f"date must be a str 'YYYY-MM-DD', got {type(date).__name__}")
    if _DATE_RE.fullmatch(date):
        with contextlib.suppress(ValueError):
            Date.fromisoformat(date)
            return
    raise ValueError(f"date={date!r}: expected a calendar date as YYYY-MM-DD, "
                     "e.g. '2026-11-26'")


def _fixed(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{_shown(value, digits):.{digits}f}"


def _signed(value: float | None, digits: int = 3) -> str:
    """A change with its sign, ``+0.041``."""
    return "—" if value is None else f"{_shown(value, digits):+.{digits}f}"


def _shown(value: float, digits: int) -> float:
    """``value`` rounded as shown, without the sign of a negative zero ("-0.000")."""
    return round(value, digits) + 0.0


def _count(value: float | None) -> str:
    return "—" if value is None else f"{round(value):,}"


def _percent(fraction: float | None) -> str:
    """A relative change as a signed percentage, ``-6.8 %``."""
    return "—" if fraction is None else f"{fraction * 100:+.1f} %".replace("-", "−")


def _clock(moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


def _jinja_environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATES_DIR), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(duration=duration_text, fixed=_fixed, count=_count, percent=_percent,
                       signed=_signed, clock=_clock)
    return env
