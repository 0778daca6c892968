"""Small builders shared by several test modules."""

from __future__ import annotations

import pytest

from overnight.models import MODELS, EEGNeXPeer

# braindecode's EEGNeX needs the optional requirements-eegnex.txt (make setup-eegnex, or a
# container image): its tests are marked, and skipped with the reason where it cannot import.
EEGNEX_UNAVAILABLE = EEGNeXPeer.unavailable()
skip_without_eegnex = pytest.mark.skipif(EEGNEX_UNAVAILABLE is not None,
                                         reason=str(EEGNEX_UNAVAILABLE))


def model_names() -> list:
    """Every registered model as a pytest parameter, EEGNeX marked as above."""
    return [pytest.param(name, marks=[pytest.mark.eegnex, skip_without_eegnex]
                         if name == "eegnex" else [])
            for name in sorted(MODELS)]


def event_row(onset: float | None, value: str, feedback: str = "n/a") -> dict[str, str]:
    """One events.tsv row as ``read_events`` returns it (``n/a`` for a missing onset)."""
    return {"onset": "n/a" if onset is None else f"{onset:.4f}", "duration": "n/a",
            "value": value, "event_code": "n/a", "feedback": feedback}
