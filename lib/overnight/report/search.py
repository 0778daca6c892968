"""The report's search section, from the night's ``search/summary.json`` (stage search):
the tune NRMSE of every trial as trials finished, Optuna's parameter importances, the best
values against the night's, and how many trials finished, were pruned or failed.

As everywhere in the report, the file may be missing or malformed: the section then says
why it is not available; text from it reaches the page only through autoescaping.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from overnight.layout import NightFolder
from overnight.report import plots

MODEL_ROW = "search"  # the comparison row of the search's best trial (stage search)
_STATES = ("complete", "pruned", "failed", "interrupted", "running", "waiting")
_MAX_PROBLEMS = 20  # failed or interrupted trials listed; the counts have them all


def search_section(folder: NightFolder, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Build the search section.

    Parameters
    ----------
    folder : NightFolder
        The night's folder.
    rows : list of dict
        The comparison's rows (none without a comparison): the ``search`` row gives the
        best trial's validation NRMSE.

    Returns
    -------
    dict
        ``note`` (None when available; else why not, or why the search was off), and
        ``study``, ``counts``, ``tonight``, ``plot``, ``importances``, ``best``,
        ``problems``, ``model`` and ``validation`` when it ran.
    """
    path = folder.search_summary
    if not path.is_file():
        return {"note": f"{path.name} not found in {path.parent} (no search stage ran)"}
    summary = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(summary, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    if summary.get("off"):
        return {"note": f"the search was {summary['off']}"}
    trials = [_trial(t) for t in summary.get("trials") or [] if isinstance(t, dict)]
    since = _time(summary.get("started"))
    best = summary.get("best") if isinstance(summary.get("best"), dict) else None
    importances = summary.get("importances") or {}
    values = importances.get("values") if isinstance(importances, dict) else None
    top = max((v for v in (values or {}).values() if _finite(v)), default=0.0) or 1.0
    row = next((r for r in rows if r.get("name") == MODEL_ROW), None)
    plotted = [t for t in trials if t["complete"] is not None and t["value"] is not None]
    return {
        "note": None,
        "study": {"study": summary.get("study"), "storage": summary.get("storage"),
                  "budget_min": summary.get("budget_min"),
                  **{key: _time(summary.get(key)) for key in ("started", "end", "ended")}},
        "n_windows": (summary.get("data") or {}).get("n_windows"),
        "counts": [(state, (summary.get("counts") or {}).get(state, 0)) for state in _STATES],
        "tonight": sum(1 for t in trials if t["tonight"]),
        "plot": plots.plot_search(plotted, since) if plotted else None,
        "importances": [{"name": str(k), "value": float(v), "width": round(100 * v / top)}
                        for k, v in (values or {}).items() if _finite(v)],
        "importance_note": importances.get("note") if isinstance(importances, dict) else None,
        "best": _best(best, summary.get("space") or []),
        "problems": [t for t in trials if t["state"] in ("failed", "interrupted")]
        [-_MAX_PROBLEMS:],
        "worker_errors": [str(e) for e in summary.get("worker_errors") or []],
        "reaped": summary.get("reaped") or [],
        "model": summary.get("model") if isinstance(summary.get("model"), dict) else None,
        "validation": None if row is None else row.get("nrmse"),
        "night_best": _night_best(rows),
    }


def _night_best(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The night's own model with the best tune NRMSE (the yardstick the trials face), or
    None without a comparison."""
    scored = [r for r in rows if r.get("name") != MODEL_ROW and _finite(r.get("tune_nrmse"))]
    best = min(scored, key=lambda r: r["tune_nrmse"], default=None)
    return None if best is None else {"name": best.get("name"), "tune_nrmse": best["tune_nrmse"],
                                      "nrmse": best.get("nrmse")}


def _best(best: dict[str, Any] | None, table: list[Any]) -> dict[str, Any] | None:
    """The best trial's values beside the night's, with each parameter's range and why."""
    if best is None:
        return None
    params = best.get("params") or {}
    night = best.get("night") or {}
    space = {str(p.get("name")): p for p in table if isinstance(p, dict)}
    return {"number": best.get("number"), "tune_nrmse": best.get("tune_nrmse"),
            "rows": [{"name": str(name), "best": _text(value),
                      "night": "—" if night.get(name) is None else _text(night.get(name)),
                      "differs": night.get(name) is not None
                      and _text(value) != _text(night.get(name)),
                      "range": str((space.get(name) or {}).get("range", "")),
                      "why": str((space.get(name) or {}).get("why", ""))}
                     for name, value in params.items()]}


def _trial(raw: dict[str, Any]) -> dict[str, Any]:
    value = raw.get("value")
    return {"number": raw.get("number"), "state": str(raw.get("state")),
            "value": float(value) if _finite(value) else None,
            "complete": _time(raw.get("complete")), "tonight": raw.get("tonight") is True,
            "why": str(raw.get("error") or raw.get("stopped") or "—"),
            "worker": raw.get("worker")}


def _text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
