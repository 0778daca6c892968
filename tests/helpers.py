"""Small builders shared by several test modules."""

from __future__ import annotations


def event_row(onset: float | None, value: str, feedback: str = "n/a") -> dict[str, str]:
    """One events.tsv row as ``read_events`` returns it (``n/a`` for a missing onset)."""
    return {"onset": "n/a" if onset is None else f"{onset:.4f}", "duration": "n/a",
            "value": value, "event_code": "n/a", "feedback": feedback}
