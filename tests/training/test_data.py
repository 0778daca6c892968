"""Serving the split: resident or streamed, the same windows and statistics; the clamp."""

import numpy as np
import pytest
import torch

from overnight.models.registry import find_model
from overnight.training.data import load_split_sides, rt_range
from overnight.training.fit import train_model
from overnight.training.loop import evaluate
from tests.conftest import TINY_TRAIN


def test_streamed_training_matches_resident_data(tiny_data, tmp_path):
    """host_cache_gb=0 streams slabs from HDF5; statistics and evaluation are unchanged."""
    from dataclasses import replace

    device = torch.device("cpu")
    small_slabs = replace(TINY_TRAIN, slab_windows=16)
    resident = load_split_sides(tiny_data.windows, tiny_data.split, tiny_data.features,
                                         device, small_slabs)
    streamed = load_split_sides(tiny_data.windows, tiny_data.split, tiny_data.features,
                                         device, replace(small_slabs, host_cache_gb=0.0))
    assert resident[0].resident and not streamed[0].resident
    for key, value in resident[3].items():
        torch.testing.assert_close(value, streamed[3][key])
    model = find_model("hybrid").build(n_filters=8).eval()
    model.set_standardization(resident[3])
    np.testing.assert_allclose(evaluate(model, streamed[1], 7),
                               evaluate(model, resident[1], 64), rtol=1e-5)
    seen = torch.cat([y for _, _, y in streamed[0].batches(10, torch.Generator())])
    torch.testing.assert_close(seen.sort().values, resident[0].y.sort().values)
    meta = train_model("hybrid", tiny_data.windows, tiny_data.split, tmp_path,
                                replace(small_slabs, host_cache_gb=0.0, max_epochs=1),
                                tiny_data.features)
    assert meta["data_on_device"] is False and np.isfinite(meta["best_tune_nrmse"])


def test_the_clamp_range_is_the_central_training_rts_within_the_plausible_range():
    rt = np.concatenate([np.linspace(0.6, 2.4, 1000), [0.05, 3.4]])  # two strays
    clamp = rt_range(rt)
    assert 0.6 <= float(clamp["rt_min"]) < 0.62 and 2.38 < float(clamp["rt_max"]) <= 2.4
    wide = rt_range(np.linspace(0.0, 4.0, 1000))
    assert (float(wide["rt_min"]), float(wide["rt_max"])) == pytest.approx((0.2, 3.0))
    odd = rt_range(np.full(10, 3.5))  # every RT beyond the plausible range
    assert float(odd["rt_min"]) == float(odd["rt_max"]) == pytest.approx(3.0)
