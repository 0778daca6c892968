"""Seconds to samples: one rule, for numbers and arrays."""

from __future__ import annotations

import numpy as np

from overnight.units import to_samples


def test_halves_round_up_whatever_the_parity():
    assert [to_samples(t, 100.0) for t in (0.005, 0.015, 0.025)] == [1, 2, 3]
    assert to_samples(2.0, 100.0) == 200 and type(to_samples(2.0, 100.0)) is int
    assert to_samples(-0.004, 100.0) == 0 and to_samples(-0.006, 100.0) == -1


def test_arrays_give_int64_indices_with_the_same_rule():
    times = np.array([0.005, 0.0149, 1.234, 2.5])
    got = to_samples(times, 100.0)
    assert got.dtype == np.int64
    assert got.tolist() == [to_samples(float(t), 100.0) for t in times]
