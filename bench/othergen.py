"""A second synthetic dataset, made differently from overnight.hbn.synth: a check that a
model holds up on physiology it was not developed on.

Nothing is shared with the project's generator but the electrode positions of the net and
the RT statistics of the real releases (REFERENCE). Here, per subject: the background is
AR(1) (brown-ish) noise from 20 sources with exponential spatial fall-off plus white sensor
noise and bursting alpha; each channel drifts linearly within a window; the CPP is a smooth
(logistic) rise to a bound at the decision with its own random centre; the motor signal is
a lateralised readiness ramp with a reafferent peak after the press; beta (15-25 Hz) at both
motor sites drops before the press and rebounds after it. The press comes an unexplained
time after the decision (``unexplained_share`` of the RT variance); the motor signals are
locked to the press itself, as in real recordings. Subjects differ in gains, noise,
source positions and timing, and single trials differ in size about as much as subjects:
the timing carries the RT, the amplitude does not. It writes a window cache (with margins),
its split and the features, the layout of a night folder.

Usage: python bench/othergen.py --out DIR [--subjects 150] [--windows-per-subject 75]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from overnight.config import WindowsConfig
from overnight.hbn.channels import CH_NAMES, N_CHANS, index_of
from overnight.layout import NightFolder
from overnight.windows.cache import write_cache_from_chunks
from overnight.windows.split import describe, write_split

log = logging.getLogger("bench.othergen")
REPO = Path(__file__).resolve().parents[1]
SFREQ_HZ = 100.0
# Behaviour: the real releases' RT figures (REFERENCE), reached with these draws.
RT_MEAN_S, RT_SD_S, SUBJECT_RT_SD_S = 1.65, 0.37, 0.247
EARLY_SHARE, DEADLINE_S, UNEXPLAINED_SHARE = 0.025, 2.42, 0.3
DRIFT_V_PER_S = 1e-6  # sd of each channel's slope within a window
# log-normal sd of the task signals' size: per subject, and per trial on top
SUBJECT_SIZE_SD, TRIAL_SIZE_SD = 0.8, 0.7


# Adds artefacts to a subject's windows (n, 129, T) volts in place: (rng, eeg, t).
Artefacts = Callable[[np.random.Generator, np.ndarray, np.ndarray], None]


def positions_m() -> np.ndarray:
    import mne

    ch_pos = mne.channels.make_standard_montage("GSN-HydroCel-129").get_positions()["ch_pos"]
    return np.array([ch_pos[name] for name in CH_NAMES])


def exp_pattern(pos: np.ndarray, centre: np.ndarray, scale_m: float) -> np.ndarray:
    return np.exp(-np.linalg.norm(pos - centre, axis=1) / scale_m)


# This generator's physiology; bench/family.py draws others from wide ranges around it.
# Amplitudes in volts, spreads in metres, times in seconds.
PHYSIOLOGY = {
    "n_sources": 20, "background_v": 6e-6, "background_sd": 0.5, "spread_m": (0.03, 0.08),
    "ar": 0.97, "sensor_v": 5e-6, "alpha_v": 15e-6, "alpha_sd": 0.7, "cpp_v": 15e-6,
    "cpp_spread_m": 0.05, "source_jitter_m": 0.01, "motor_spread_m": 0.035,
    "lrp_v": 6e-6, "reafferent_v": 5e-6, "beta_v": 8e-6, "erd_depth": 0.6,
    "onset_s": (0.15, 0.35), "subject_size_sd": SUBJECT_SIZE_SD,
    "trial_size_sd": TRIAL_SIZE_SD, "unexplained_share": UNEXPLAINED_SHARE,
}


def subject(rng: np.random.Generator, pos: np.ndarray, phys: dict = PHYSIOLOGY) -> dict:
    """One subject's physiology: patterns (volts per unit), gains, rhythms, timing."""
    def near(names: list[str], spread_m: float) -> np.ndarray:
        return pos[[index_of(n) for n in names]].mean(axis=0) + rng.normal(0, spread_m, 3)

    sources = pos[rng.choice(N_CHANS - 1, phys["n_sources"], replace=False)]
    jitter, size_sd = phys["source_jitter_m"], phys["subject_size_sd"]
    return {
        "background": np.stack([exp_pattern(pos, c, rng.uniform(*phys["spread_m"]))
                                for c in sources])
        * phys["background_v"] * rng.lognormal(0, phys["background_sd"]),
        "sensor_v": phys["sensor_v"] * rng.lognormal(0, 0.3),
        "alpha": exp_pattern(pos, near(["O1", "O2", "Oz"], 0.015), 0.04)
        * phys["alpha_v"] * rng.lognormal(0, phys["alpha_sd"]),
        "alpha_hz": rng.uniform(8.0, 13.0),
        "cpp": exp_pattern(pos, near(["CPz", "Pz"], jitter), phys["cpp_spread_m"])
        * phys["cpp_v"] * rng.lognormal(0, size_sd),
        "motor": [exp_pattern(pos, near([side], jitter), phys["motor_spread_m"])
                  * rng.lognormal(0, size_sd) for side in ("C3", "C4")],
        "beta_hz": rng.uniform(15.0, 25.0),
        "onset_s": rng.uniform(*phys["onset_s"]),
        "mean_rt_s": RT_MEAN_S + np.sqrt(1 - phys["unexplained_share"])
        * rng.normal(0, SUBJECT_RT_SD_S),
    }


def trial_rts(rng: np.random.Generator, s: dict, n: int, phys: dict = PHYSIOLOGY
              ) -> tuple[np.ndarray, np.ndarray]:
    """(recorded RT: the press, the decision's RT: the CPP's bound) for n trials, the late
    ones dropped."""
    unexplained = phys["unexplained_share"]
    trial_sd = np.sqrt((RT_SD_S**2 - SUBJECT_RT_SD_S**2) * (1 - unexplained))
    encoded = s["mean_rt_s"] + rng.normal(0, trial_sd, n * 2)
    rt = encoded + rng.normal(0, np.sqrt(unexplained) * RT_SD_S, n * 2)
    early = rng.random(n * 2) < EARLY_SHARE
    encoded = np.where(early, rng.uniform(0.0, 0.5, n * 2), np.clip(encoded, 0.25, 3.0))
    rt = np.where(early, encoded, np.clip(rt, 0.25, 3.0))
    keep = np.flatnonzero(rt <= DEADLINE_S)[:n]
    return np.round(rt[keep] * SFREQ_HZ) / SFREQ_HZ, encoded[keep]


def simulate(rng: np.random.Generator, s: dict, rt_enc: np.ndarray, rt_press: np.ndarray,
             hand_right: np.ndarray, t: np.ndarray, phys: dict = PHYSIOLOGY) -> np.ndarray:
    """(n, 129, len(t)) volts; t in seconds after the stimulus: the CPP reaches its bound
    at the decision (``rt_enc``), the motor signals are locked to the press (``rt_press``)."""
    n, n_t, a = len(rt_enc), len(t), phys["ar"]
    ar = np.empty((n, len(s["background"]), n_t))
    ar[..., 0] = rng.normal(0, 1, ar.shape[:2]) / np.sqrt(1 - a**2)
    shocks = rng.normal(0, 1, ar.shape)
    for k in range(1, n_t):
        ar[..., k] = a * ar[..., k - 1] + shocks[..., k]
    eeg = np.einsum("sc,nst->nct", s["background"], ar * np.sqrt(1 - a**2))
    eeg += s["sensor_v"] * rng.normal(0, 1, (n, N_CHANS, n_t))
    burst = np.abs(np.cumsum(rng.normal(0, 0.15, (n, n_t)), axis=1)) % 2.0
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    alpha = burst * np.sin(2 * np.pi * s["alpha_hz"] * t + phase)
    eeg += s["alpha"][None, :, None] * alpha[:, None]
    # drift: a random slope per channel and window
    eeg += rng.normal(0, DRIFT_V_PER_S, (n, N_CHANS, 1)) * (t - t.mean())
    rt = rt_enc[:, None]
    # single trials differ in size as much as subjects do: a timing read-out must not
    # depend on the amplitude
    size = rng.lognormal(0, phys["trial_size_sd"], (n, 1))
    centre, width = (s["onset_s"] + rt) / 2, np.maximum(rt - s["onset_s"], 0.05) / 6
    rise = 1.0 / (1.0 + np.exp(-(t - centre) / width))  # ~0.95 of the bound at the press
    cpp = np.where(t <= rt, rise, 0.95 * np.exp(-(t - rt) / 0.15))
    eeg += s["cpp"][None, :, None] * (size * cpp)[:, None]
    to_press = t - rt_press[:, None]
    lrp = np.where((to_press > -0.5) & (to_press <= 0), -(1 + to_press / 0.5), 0.0) \
        * phys["lrp_v"]
    lrp += phys["reafferent_v"] * np.exp(-0.5 * ((to_press - 0.15) / 0.06) ** 2)
    depth = phys["erd_depth"]
    erd = 1 - depth * np.clip(1 + to_press / 0.6, 0, 1) * (to_press <= 0) \
        - depth * np.clip(1 - to_press / 0.4, 0, 1) * (to_press > 0) \
        + depth / 2 * ((to_press > 0.6) & (to_press < 1.0))
    beta_phase = rng.uniform(0, 2 * np.pi, (n, 1))
    beta = phys["beta_v"] * np.sin(2 * np.pi * s["beta_hz"] * t + beta_phase)
    for side, pattern in enumerate(s["motor"]):  # 0: C3 (left), contralateral to right
        contra = (hand_right if side == 0 else ~hand_right)[:, None]
        envelope = np.where(contra, erd, 1 - 0.4 * (1 - erd))  # ipsilateral: weaker
        eeg += pattern[None, :, None] * (size * lrp * contra + beta * envelope)[:, None]
    eeg[:, index_of("Cz")] = 0.0
    return eeg.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="night folder to write")
    parser.add_argument("--subjects", type=int, default=150)
    parser.add_argument("--windows-per-subject", type=int, default=75)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    write_dataset(args.out, args.subjects, args.windows_per_subject, args.seed)
    return 0


def write_dataset(out: Path, n_subjects: int, windows_per_subject: int, seed: int,
                  phys: dict = PHYSIOLOGY, artefacts: Artefacts | None = None,
                  label: str = "OTHER", made_by: str = "bench/othergen.py") -> None:
    """The window cache, split and features of ``n_subjects`` subjects of ``phys`` into
    the night folder ``out``; ``artefacts(rng, eeg, t)`` adds to each subject's windows."""
    cfg = WindowsConfig()
    folder = NightFolder(out)
    out.mkdir(parents=True, exist_ok=True)
    pos = positions_m()
    margin, n_times = cfg.margin_samples, cfg.n_times
    t = (np.arange(n_times + 2 * margin) - margin) / SFREQ_HZ + cfg.window_start_s

    def chunks():
        for k in range(n_subjects):
            rng = np.random.default_rng([seed, k])
            s = subject(rng, pos, phys)
            rt, enc = trial_rts(rng, s, windows_per_subject, phys)
            hand = rng.random(len(rt)) < 0.5
            eeg = simulate(rng, s, enc, rt, hand, t, phys)
            if artefacts is not None:
                artefacts(rng, eeg, t)
            n = len(rt)
            yield {"eeg": eeg[..., margin:margin + n_times], "eeg_before": eeg[..., :margin],
                   "eeg_after": eeg[..., margin + n_times:], "rt": rt.astype(np.float32),
                   "subject": [f"{label}{k:04d}"] * n, "release": [f"R{k % 5 + 1}"] * n,
                   "run": np.ones(n, np.int16), "trial": np.arange(n, dtype=np.int32),
                   "stim_onset_s": 10.0 + 5.0 * np.arange(n),
                   "response_onset_s": 10.0 + 5.0 * np.arange(n) + rt,
                   "hand": ["right" if h else "left" for h in hand],
                   "correct": np.ones(n, bool), "recording": np.full(n, k, np.int32)}

    n = write_cache_from_chunks(folder.windows, chunks(), cfg, made_by)
    split = write_split(folder.windows, folder.split, cfg)
    log.info("%d windows, %s -> %s", n, describe(split), folder.windows)
    subprocess.run([sys.executable, "jobs/features.py", "--windows", str(folder.windows),
                    "--out", str(folder.features)], cwd=REPO, check=True)


if __name__ == "__main__":
    raise SystemExit(main())
