"""Seconds to samples, the one conversion every module asks.

Embedded verbatim into the generated ``submission.py`` (with the feature spec), so it
imports nothing.
"""

from __future__ import annotations

from typing import Any


def to_samples(seconds: Any, sfreq_hz: float) -> Any:
    """The sample count (or index) nearest to ``seconds`` at ``sfreq_hz``, halves rounded up.

    Rounding half up, unlike Python's ``round`` (half to even), gives the same index for a
    time whatever the neighbouring sample's parity. A number gives an ``int``; a NumPy array
    of times gives an array of int64 sample indices.
    """
    samples = (seconds * sfreq_hz + 0.5) // 1
    return int(samples) if isinstance(samples, (int, float)) else samples.astype("int64")
