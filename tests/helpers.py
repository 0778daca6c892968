"""Small builders shared by several test modules."""

from __future__ import annotations

import pytest

from overnight.models.eegnex import EEGNeXPeer
from overnight.models.registry import builtin_names

# braindecode's EEGNeX needs the optional requirements-eegnex.txt (make setup-eegnex, or a
# container image): its tests are marked, and skipped with the reason where it cannot import.
EEGNEX_UNAVAILABLE = EEGNeXPeer.unavailable()
skip_without_eegnex = pytest.mark.skipif(EEGNEX_UNAVAILABLE is not None,
                                         reason=str(EEGNEX_UNAVAILABLE))


def model_names() -> list:
    """Every registered model as a pytest parameter, EEGNeX marked as above."""
    return [pytest.param(name, marks=[pytest.mark.eegnex, skip_without_eegnex]
                         if name == "eegnex" else [])
            for name in builtin_names()]


def event_row(onset: float | None, value: str, feedback: str = "n/a") -> dict[str, str]:
    """One events.tsv row as ``read_events`` returns it (``n/a`` for a missing onset)."""
    return {"onset": "n/a" if onset is None else f"{onset:.4f}", "duration": "n/a",
            "value": value, "event_code": "n/a", "feedback": feedback}


def record_cache_reads(monkeypatch: pytest.MonkeyPatch) -> list:
    """Record the rows every read of the window and feature caches asks for (a list of
    index arrays, filled as they are read): to show which windows a job never reads."""
    import numpy as np

    from overnight.features import cache as feature_cache
    from overnight.windows import cache as window_cache

    read: list = []
    real_read_rows = window_cache.read_rows

    def recording_read_rows(dataset, index):
        read.append(np.asarray(index))
        return real_read_rows(dataset, index)

    monkeypatch.setattr(window_cache, "read_rows", recording_read_rows)
    monkeypatch.setattr(feature_cache, "read_rows", recording_read_rows)
    return read
