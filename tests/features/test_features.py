"""Features: Numba vs the PyTorch twin, known answers, the cache stage and the job."""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import overnight.features.cache as cache_mod
from overnight.config import FeaturesConfig, WindowsConfig
from overnight.features import spec
from overnight.features.cache import build_feature_cache, read_features
from overnight.features.kernels import compute_features
from overnight.features.spec import (
    C3,
    C4,
    CPZ,
    FEATURE_NAMES,
    O1,
    PZ,
    WindowFeatures,
    window_features,
)
from overnight.hbn.channels import TEN_TWENTY, index_of
from overnight.windows.cache import open_cache, write_cache_from_chunks

SFREQ_HZ = 100.0
START_S = 0.5
N_TIMES = 200
T_S = np.arange(N_TIMES) / SFREQ_HZ  # window-relative time, s
KEEP = 128 / 129  # share of a single-channel signal left after the average reference
REPO = Path(__file__).resolve().parents[2]


def _both(eeg: np.ndarray, sfreq_hz: float = SFREQ_HZ,
          start_s: float = START_S) -> tuple[np.ndarray, np.ndarray]:
    numba_out = compute_features(eeg, sfreq_hz, start_s)
    twin_out = window_features(torch.from_numpy(eeg), sfreq_hz, start_s).numpy()
    return numba_out, twin_out


def _one(planted: dict[int, np.ndarray]) -> list[dict[str, float]]:
    """Features of one window holding ``planted`` channels (else zeros), from both codes."""
    eeg = np.zeros((1, 129, N_TIMES), np.float32)
    for chan, signal in planted.items():
        eeg[0, chan] = signal
    return [dict(zip(FEATURE_NAMES, out[0].tolist(), strict=True)) for out in _both(eeg)]


def _planted_windows(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise at EEG scale plus, per window, a random CPP ramp, beta burst and press."""
    eeg = rng.normal(0.0, 2e-5, (n, 129, N_TIMES))
    eeg[:, 128] = 0.0  # Cz, the recording reference, is flat
    for w in range(n):
        peak = rng.integers(20, N_TIMES)
        eeg[w, [CPZ, PZ]] += 3e-4 * np.minimum(T_S, T_S[peak]) * rng.uniform(0.5, 2.0)
        eeg[w, C3] += 1e-5 * np.sin(2 * np.pi * rng.uniform(13, 30) * T_S + rng.uniform(0, 6))
        eeg[w, rng.choice([C3, C4]), rng.integers(0, N_TIMES)] += rng.choice([-1, 1]) * 5e-5
    return eeg.astype(np.float32)


# --- the spec is self-contained ------------------------------------------------------

def test_spec_imports_only_what_the_scorer_has() -> None:
    tree = ast.parse(Path(spec.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    # the project's two modules are embedded into submission.py with the spec
    assert imported <= {"functools", "math", "typing", "__future__", "torch", "overnight.units",
                        "overnight.hbn.channels"}, imported


def test_spec_channels_are_the_montage_s_10_20_equivalents() -> None:
    by_name = {"CPz": spec.CPZ, "Pz": spec.PZ, "C3": spec.C3, "C4": spec.C4, "O1": spec.O1,
               "O2": spec.O2, "Oz": spec.OZ}
    for name, index in by_name.items():
        assert index == index_of(TEN_TWENTY[name]) == int(TEN_TWENTY[name][1:]) - 1, name


def test_module_wraps_function_without_parameters() -> None:
    module = WindowFeatures(SFREQ_HZ, START_S)
    x = torch.randn(3, 129, N_TIMES) * 1e-5
    assert list(module.parameters()) == []
    assert isinstance(module.sfreq_hz, float) and module.window_start_s == START_S
    torch.testing.assert_close(module(x), window_features(x, SFREQ_HZ, START_S), rtol=0, atol=0)


# --- parity ---------------------------------------------------------------------------

def _atol(name: str) -> float:
    if name.endswith("_v_per_s"):
        return 1e-9  # slopes are ~1e-4 V/s
    if name.endswith("_v"):
        return 1e-12  # amplitudes are ~1e-5 V
    return 1e-6  # log10 powers (~ -10) and ratios (-1..1)


def test_numba_matches_twin_on_noise_and_planted_signals() -> None:
    rng = np.random.default_rng(1)
    eeg = np.concatenate([_planted_windows(rng, 300),
                          (rng.normal(0, 1e-4, (100, 129, N_TIMES))).astype(np.float32),
                          np.zeros((1, 129, N_TIMES), np.float32)])
    numba_out, twin_out = _both(eeg)
    assert numba_out.shape == twin_out.shape == (len(eeg), len(FEATURE_NAMES))
    assert numba_out.dtype == twin_out.dtype == np.float32
    for col, name in enumerate(FEATURE_NAMES):
        if name.endswith("latency_s"):
            np.testing.assert_array_equal(numba_out[:, col], twin_out[:, col], err_msg=name)
        else:
            np.testing.assert_allclose(numba_out[:, col], twin_out[:, col], rtol=1e-5,
                                       atol=_atol(name), err_msg=name)
    assert np.ptp(numba_out[:-1], axis=0).min() > 0  # no constant column on real input


def test_numba_matches_twin_at_500_hz() -> None:
    rng = np.random.default_rng(2)
    eeg = (rng.normal(0, 2e-5, (6, 129, 1000))).astype(np.float32)
    numba_out, twin_out = _both(eeg, sfreq_hz=500.0)
    np.testing.assert_allclose(numba_out, twin_out, rtol=1e-5, atol=1e-9)


# --- known answers --------------------------------------------------------------------

def test_beta_sine_on_c3_gives_its_power() -> None:
    amp_v = 1e-5
    sine = amp_v * np.sin(2 * np.pi * 20.0 * T_S)
    for got in _one({C3: sine}):
        c3_v2 = (amp_v * KEEP) ** 2 / 2  # a sine of amplitude A has power A**2 / 2
        c4_v2 = (amp_v / 129) ** 2 / 2  # what the average reference puts on C4
        assert got["beta_c3_log10_v2"] == pytest.approx(np.log10(c3_v2), abs=1e-5)
        assert got["beta_c4_log10_v2"] == pytest.approx(np.log10(c4_v2), abs=1e-5)
        assert got["beta_lat_ratio"] == pytest.approx((c4_v2 - c3_v2) / (c4_v2 + c3_v2), abs=1e-6)
        for seg in range(spec.N_BETA_SEGMENTS):
            assert got[f"beta_c3_seg{seg}_log10_v2"] == pytest.approx(np.log10(c3_v2), abs=1e-5)
        assert got["mu_c3_log10_v2"] < np.log10(c3_v2) - 6  # 20 Hz is far from the mu band


def test_alpha_sine_on_o1_gives_the_occipital_mean() -> None:
    amp_v = 2e-5
    got_numba, got_twin = _one({O1: amp_v * np.cos(2 * np.pi * 10.0 * T_S)})
    expected_v2 = (KEEP**2 + 2 / 129**2) * amp_v**2 / 2 / 3  # O1, O2 and Oz averaged
    for got in (got_numba, got_twin):
        assert got["alpha_occ_log10_v2"] == pytest.approx(np.log10(expected_v2), abs=1e-5)


def test_cpp_ramp_gives_slope_and_peak_latency() -> None:
    rate_v_per_s = 2e-5
    ramp = rate_v_per_s * T_S
    for got in _one({CPZ: ramp, PZ: ramp}):
        kept = rate_v_per_s * 127 / 129  # two of 129 channels carry the ramp
        assert got["cpp_slope_v_per_s"] == pytest.approx(kept, rel=1e-5)
        assert got["cpp_peak_latency_s"] == pytest.approx(START_S + (N_TIMES - 1) / SFREQ_HZ)
        assert got["cpp_mean_v"] == pytest.approx(kept * T_S.mean(), rel=1e-5)


def test_cpp_triangle_peaks_at_its_apex() -> None:
    rate_v_per_s, apex = 3e-5, 120
    triangle = rate_v_per_s * (T_S[apex] - np.abs(T_S - T_S[apex]))
    for got in _one({CPZ: triangle, PZ: triangle}):
        assert got["cpp_peak_latency_s"] == pytest.approx(START_S + apex / SFREQ_HZ, abs=1e-6)
        assert got["cpp_slope_v_per_s"] == pytest.approx(rate_v_per_s * 127 / 129, rel=1e-5)


def test_p3_is_the_mean_over_its_interval() -> None:
    pz = np.where(T_S < 0.3, 4e-6, 0.0)  # stimulus +0.5..+0.8 s is window 0..0.3 s
    for got in _one({PZ: pz}):
        assert got["p3_amp_v"] == pytest.approx(4e-6 * KEEP, rel=1e-6)


@pytest.mark.parametrize(("chan", "sign"), [(C3, 1.0), (C4, -1.0)])
def test_impulse_gives_motor_latency(chan: int, sign: float) -> None:
    amp_v, sample = 5e-5, 137
    impulse = np.zeros(N_TIMES)
    impulse[sample] = amp_v
    for got in _one({chan: impulse}):
        assert got["motor_latency_s"] == pytest.approx(START_S + sample / SFREQ_HZ)
        assert got["motor_amp_v"] == pytest.approx(sign * amp_v * 30 / 31, rel=1e-6)  # 31-tap MA


def test_all_zero_window_is_finite() -> None:
    for got in _one({}):
        assert all(np.isfinite(value) for value in got.values())
        assert got["beta_c3_log10_v2"] == pytest.approx(np.log10(spec.LOG_EPS_V2))
        assert got["beta_lat_ratio"] == 0.0
        assert got["cpp_peak_latency_s"] == got["motor_latency_s"] == START_S


def test_constant_and_huge_windows_are_finite() -> None:
    eeg = np.stack([np.full((129, N_TIMES), 1e-3), np.full((129, N_TIMES), 1e3)])
    for out in _both(eeg.astype(np.float32)):
        assert np.isfinite(out).all()


# --- input checks ---------------------------------------------------------------------

@pytest.mark.parametrize(("eeg", "error", "match"), [
    ([[[0.0]]], TypeError, "eeg: expected a numpy.ndarray"),
    (np.zeros((2, 129, N_TIMES)), TypeError, "eeg: expected dtype float32, got float64"),
    (np.zeros((2, 128, N_TIMES), np.float32), ValueError, r"eeg: expected shape \(N, 129, T\)"),
    (np.zeros((129, N_TIMES), np.float32), ValueError, r"eeg: expected shape"),
    (np.zeros((2, 129, 100), np.float32), ValueError, "n_times=100: expected at least 200"),
])
def test_compute_rejects_bad_arrays(eeg: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        compute_features(eeg, SFREQ_HZ, START_S)  # type: ignore[arg-type]


@pytest.mark.parametrize(("sfreq_hz", "start_s", "error", "match"), [
    (float("nan"), START_S, ValueError, "sfreq_hz=nan: expected a finite number"),
    ("100", START_S, TypeError, "sfreq_hz='100': expected a real number"),
    (50.0, START_S, ValueError, "sfreq_hz=50.0: expected above 60.0 Hz"),
    (SFREQ_HZ, float("inf"), ValueError, "window_start_s=inf"),
    (SFREQ_HZ, 1.0, ValueError, "must overlap the P3 interval"),
])
def test_both_reject_bad_geometry(sfreq_hz: object, start_s: float, error: type,
                                  match: str) -> None:
    eeg = np.zeros((1, 129, N_TIMES), np.float32)
    with pytest.raises(error, match=match):
        compute_features(eeg, sfreq_hz, start_s)  # type: ignore[arg-type]
    with pytest.raises(error, match=match):
        window_features(torch.from_numpy(eeg), sfreq_hz, start_s)  # type: ignore[arg-type]


@pytest.mark.parametrize(("x", "error", "match"), [
    (np.zeros((1, 129, N_TIMES), np.float32), TypeError, "got ndarray"),
    (torch.zeros(1, 129, N_TIMES, dtype=torch.int32), TypeError, "got torch.int32"),
    (torch.zeros(1, 128, N_TIMES), ValueError, r"got \(1, 128, 200\)"),
])
def test_twin_rejects_bad_tensors(x: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        window_features(x, SFREQ_HZ, START_S)  # type: ignore[arg-type]


# --- the stage ------------------------------------------------------------------------

def _write_windows(path: Path, eeg: np.ndarray) -> None:
    n = len(eeg)
    chunk = {"eeg": eeg, "rt": np.ones(n, np.float32), "subject": ["S1"] * n,
             "release": ["R1"] * n, "run": np.ones(n, np.int16), "trial": np.arange(n),
             "stim_onset_s": np.arange(n),
             "response_onset_s": np.arange(n) + 1.0, "hand": ["left"] * n,
             "correct": np.ones(n, bool), "recording": np.zeros(n, np.int32)}
    write_cache_from_chunks(path, [chunk], WindowsConfig(sfreq_hz=SFREQ_HZ, margin_s=0.0,
                                                         window_start_s=START_S), "test")


@pytest.fixture
def windows_h5(tmp_path: Path) -> tuple[Path, np.ndarray]:
    eeg = _planted_windows(np.random.default_rng(3), 23)
    path = tmp_path / "windows.h5"
    _write_windows(path, eeg)
    return path, eeg


def test_stage_writes_features_and_provenance(windows_h5: tuple[Path, np.ndarray],
                                              tmp_path: Path) -> None:
    windows, eeg = windows_h5
    out = tmp_path / "sub" / "features.h5"
    summary = build_feature_cache(windows, out, FeaturesConfig(slab_windows=7), progress=False)
    feats, names = read_features(out)
    assert names == list(FEATURE_NAMES)
    assert feats.shape == (23, len(FEATURE_NAMES)) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats, compute_features(eeg, SFREQ_HZ, START_S))
    with h5py.File(out, "r") as fh:
        attrs = dict(fh.attrs)
    assert attrs["n_windows"] == 23 == summary["n_windows"]
    assert attrs["source"] == str(windows.resolve())
    with open_cache(windows) as cache:
        assert attrs["source_created"] == cache.created
    assert json.loads(attrs["config"]) == {"features": {"slab_windows": 7}}
    assert attrs["sfreq_hz"] == SFREQ_HZ and attrs["window_start_s"] == START_S
    assert attrs["compile_s"] >= 0 and attrs["compute_s"] > 0 and attrs["windows_per_s"] > 0
    assert {"code_version", "created"} <= set(attrs)
    assert sorted(p.name for p in out.parent.iterdir()) == ["features.h5"]  # no temp left


def test_slab_size_does_not_change_results(windows_h5: tuple[Path, np.ndarray],
                                           tmp_path: Path) -> None:
    windows, _ = windows_h5
    for slab in (1, 7, 1000):
        build_feature_cache(windows, tmp_path / f"f{slab}.h5", FeaturesConfig(slab_windows=slab),
                            progress=False)
    reference, _ = read_features(tmp_path / "f1000.h5")
    for slab in (1, 7):
        np.testing.assert_array_equal(read_features(tmp_path / f"f{slab}.h5")[0], reference)


def test_failed_pass_leaves_existing_output(windows_h5: tuple[Path, np.ndarray], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    windows, _ = windows_h5
    out = tmp_path / "features.h5"
    out.write_bytes(b"previous night")
    real = cache_mod.compute_features

    def fail_on_second_slab(eeg: np.ndarray, *args: float) -> np.ndarray:
        fail_on_second_slab.calls += 1  # type: ignore[attr-defined]
        if fail_on_second_slab.calls > 2:  # type: ignore[attr-defined]  # warm-up, slab 1
            raise RuntimeError("disk on fire")
        return real(eeg, *args)

    fail_on_second_slab.calls = 0  # type: ignore[attr-defined]
    monkeypatch.setattr(cache_mod, "compute_features", fail_on_second_slab)
    with pytest.raises(RuntimeError, match="disk on fire"):
        build_feature_cache(windows, out, FeaturesConfig(slab_windows=7), progress=False)
    assert out.read_bytes() == b"previous night"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features.h5", "windows.h5"]


def test_stage_rejects_bad_inputs(tmp_path: Path) -> None:
    path = tmp_path / "windows.h5"
    with h5py.File(path, "w") as fh:
        fh.create_dataset("eeg", data=np.zeros((2, 129, N_TIMES), np.float32))
    with pytest.raises(ValueError, match=r"missing attribute\(s\) \['sfreq_hz'"):
        build_feature_cache(path, tmp_path / "f.h5", FeaturesConfig(), progress=False)
    with pytest.raises(ValueError, match=r"\[features\] slab_windows = 0: expected >= 1"):
        FeaturesConfig(slab_windows=0)
    assert not (tmp_path / "f.h5").exists()


def test_read_features_by_index(windows_h5: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    windows, _ = windows_h5
    out = tmp_path / "features.h5"
    build_feature_cache(windows, out, FeaturesConfig(), progress=False)
    everything, _ = read_features(out)
    picked, names = read_features(out, np.array([5, 0, 22]))
    np.testing.assert_array_equal(picked, everything[[5, 0, 22]])
    assert len(names) == picked.shape[1]
    with pytest.raises(TypeError, match=r"index: expected an integer numpy\.ndarray, got list"):
        read_features(out, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"expected 0\.\.22"):
        read_features(out, np.array([23]))


def test_job_writes_the_cache(windows_h5: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("features_job", REPO / "jobs" / "features.py")
    job = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(job)  # type: ignore[union-attr]
    windows, _ = windows_h5
    out = tmp_path / "features.h5"
    assert job.main(["--windows", str(windows), "--out", str(out),
                     "--set", "features.slab_windows=5"]) == 0
    assert read_features(out)[0].shape == (23, len(FEATURE_NAMES))
