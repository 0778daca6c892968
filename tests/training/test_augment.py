"""Augmentation of training batches: each transform against a known answer, and the shifted
crops' target against where the press lands."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from overnight.config import TrainConfig
from overnight.hbn.channels import N_CHANS, positions_m
from overnight.models.base import Batch
from overnight.models.registry import find_model
from overnight.training import augment
from overnight.training.augment import Augmentation

N_TIMES, MARGIN = 200, 50


def _ramps(batch: int, channels: int = 3) -> torch.Tensor:
    """(batch, channels, margin + n_times + margin): sample value = its index + 1000 x channel."""
    index = torch.arange(N_TIMES + 2 * MARGIN, dtype=torch.float32)
    return (index + 1000.0 * torch.arange(channels)[:, None]).expand(batch, -1, -1).clone()


def test_shifted_crops_cut_at_margin_plus_shift():
    torch.manual_seed(0)
    crops, shift = augment.shifted_crops(_ramps(256), N_TIMES, MARGIN, max_shift=20)
    assert crops.shape == (256, 3, N_TIMES)
    assert shift.min() >= -20 and shift.max() <= 20 and len(set(shift.tolist())) > 30
    expected = (MARGIN + shift)[:, None, None] + torch.arange(N_TIMES) \
        + 1000.0 * torch.arange(3)[:, None]
    torch.testing.assert_close(crops, expected.float())


def test_shifted_crops_refuse_a_shift_beyond_the_margin():
    with pytest.raises(ValueError, match=r"expected 0\.\.50"):
        augment.shifted_crops(_ramps(2), N_TIMES, MARGIN, max_shift=51)
    with pytest.raises(ValueError, match="samples; expected 200"):
        augment.shifted_crops(_ramps(2)[..., :-1], N_TIMES, MARGIN, max_shift=5)


def test_scale_multiplies_whole_windows_or_channels():
    torch.manual_seed(0)
    x = torch.ones(4000, 2, 10)
    per_window = augment.scale(x, 0.5, 0.0)
    assert (per_window == per_window[:, :1, :1]).all()  # one gain per window
    log_gain = per_window[:, 0, 0].log()
    assert log_gain.mean().abs() < 0.05 and log_gain.std() == pytest.approx(0.5, rel=0.05)
    per_channel = augment.scale(x, 0.0, 0.3)
    assert (per_channel == per_channel[..., :1]).all()  # constant along time
    assert per_channel[:, 0, 0].log().std() == pytest.approx(0.3, rel=0.05)
    assert not torch.equal(per_channel[:, 0], per_channel[:, 1])


def test_drop_channels_fills_with_the_channel_mean():
    torch.manual_seed(0)
    x = torch.randn(2000, 4, 8)
    fill = torch.tensor([[7.0], [8.0], [9.0], [10.0]])
    out = augment.drop_channels(x, 0.25, fill)
    dropped = (out == fill).all(dim=2)  # (B, C)
    assert dropped.float().mean() == pytest.approx(0.25, abs=0.02)
    torch.testing.assert_close(out[~dropped], x[~dropped])
    assert torch.equal(augment.drop_channels(x, 0.0, fill), x)


def test_add_noise_in_units_of_the_channel_std():
    torch.manual_seed(0)
    x = torch.zeros(500, 2, 100)
    noise = augment.add_noise(x, 0.5, torch.tensor([[2.0], [4.0]]))
    assert noise[:, 0].std() == pytest.approx(1.0, rel=0.02)
    assert noise[:, 1].std() == pytest.approx(2.0, rel=0.02)


def test_mixup_mixes_windows_features_and_targets_alike():
    torch.manual_seed(0)
    x = torch.arange(64, dtype=torch.float32)[:, None, None].expand(-1, 2, 5).clone()
    features = x[:, 0, :3].clone()
    y = torch.arange(64, dtype=torch.float32)
    mixed_x, mixed_f, mixed_y = augment.mixup(x, features, y, alpha=0.4)
    # every window is a blend of two and says so in its target: x = y everywhere
    torch.testing.assert_close(mixed_x, mixed_y[:, None, None].expand(-1, 2, 5))
    torch.testing.assert_close(mixed_f, mixed_y[:, None].expand(-1, 3))
    assert not torch.equal(mixed_y, y)


def test_a_shifted_crop_keeps_its_target_on_the_press():
    """A spike where the press is: after the crop, the target (RT - shift) still says
    where the spike lies in the window."""
    sfreq_hz, start_s = 100.0, 0.5
    model = find_model("baseline").build(n_chans=3, n_times=N_TIMES, n_filters=4)
    model.set_standardization({"target_mean": torch.tensor(1.6),
                               "target_std": torch.tensor(0.4)})
    rt_s = torch.tensor([0.9, 1.3, 1.7, 2.1, 2.4])
    x = torch.zeros(len(rt_s), 3, N_TIMES + 2 * MARGIN)
    press = MARGIN + ((rt_s - start_s) * sfreq_hz).round().long()
    x[torch.arange(len(rt_s)), 1, press] = 1.0
    cfg = dataclasses.replace(TrainConfig(), crop_shift_s=0.3, sensor_rotation_deg=0.0)
    augmentation = Augmentation(cfg, MARGIN, sfreq_hz)
    torch.manual_seed(3)
    y = (rt_s - 1.6) / 0.4
    crops, features, y_crop = augmentation(model, Batch(x, torch.zeros(len(rt_s), 2), y))
    assert features is None  # the cached features are the official window's
    target_s = y_crop * 0.4 + 1.6
    where = crops[:, 1].argmax(dim=1)
    torch.testing.assert_close(start_s + where / sfreq_hz, target_s, atol=1e-5, rtol=0)
    assert not torch.allclose(target_s, rt_s)  # it did shift


def _smooth_field(unit: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """A smooth scalp map: largest where the unit vectors point along ``direction``."""
    return np.exp(2.0 * unit @ (direction / np.linalg.norm(direction)))


def test_the_spline_reads_a_smooth_field_where_the_rotated_net_sits():
    unit = augment.on_unit_sphere(positions_m())
    assert np.linalg.norm(unit, axis=1) == pytest.approx(np.ones(N_CHANS))
    rotated = unit @ augment.rotation_matrix(np.array([1.0, 0.2, 0.0]), np.deg2rad(15)).T
    direction = np.array([0.3, -0.5, 0.8])
    field = _smooth_field(unit, direction)
    read = augment.spline_interpolation(unit, rotated) @ field
    truth = _smooth_field(rotated, direction)
    assert np.abs(read - truth).max() < 1e-2 * truth.std()
    assert np.abs(field - truth).max() > 0.3 * truth.std()  # the rotation moved the map


def test_a_rotation_bank_keeps_constants_and_is_the_identity_at_zero_degrees():
    still = augment.rotation_bank(positions_m(), 0.0, 2, np.random.default_rng(0))
    torch.testing.assert_close(still, torch.eye(N_CHANS).expand(2, -1, -1), atol=1e-5, rtol=0)
    bank = augment.rotation_bank(positions_m(), 20.0, 8, np.random.default_rng(0))
    assert bank.shape == (8, N_CHANS, N_CHANS) and bank.dtype == torch.float32
    torch.testing.assert_close(bank.sum(dim=2), torch.ones(8, N_CHANS), atol=1e-4, rtol=0)
    moved = (bank - torch.eye(N_CHANS)).abs().amax(dim=(1, 2))
    assert (moved > 0.05).sum() >= 6  # angles near 0 are allowed, most are not


def test_rotate_sensors_gives_each_window_one_matrix_of_the_bank():
    torch.manual_seed(0)
    bank = torch.stack([torch.eye(3), 2.0 * torch.eye(3)])
    x = torch.ones(200, 3, 5)
    out = augment.rotate_sensors(x, bank)
    factor = out[:, 0, 0]
    assert set(factor.tolist()) == {1.0, 2.0}
    assert torch.equal(out, factor[:, None, None].expand(-1, 3, 5))
    with pytest.raises(ValueError, match="reads the 3 electrodes of the net; these windows "
                                         "have 4 channels"):
        augment.rotate_sensors(torch.ones(2, 4, 5), bank)
