"""A second synthetic dataset, made differently from overnight.hbn.synth: a check that a
model holds up on physiology it was not developed on.

Nothing is shared with the project's generator but the electrode positions of the net and
the RT statistics of the real releases (REFERENCE). Here, per subject: the background is
AR(1) (brown-ish) noise from 20 sources with exponential spatial fall-off plus white sensor
noise and bursting alpha; each channel drifts linearly within a window; the CPP is a smooth
(logistic) rise to a bound at the response with its own random centre; the motor signal is
a lateralised readiness ramp with a reafferent peak after the press; beta (15-25 Hz) at both
motor sites drops before the press and rebounds after it. Subjects differ in gains, noise,
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


def positions_m() -> np.ndarray:
    import mne

    ch_pos = mne.channels.make_standard_montage("GSN-HydroCel-129").get_positions()["ch_pos"]
    return np.array([ch_pos[name] for name in CH_NAMES])


def exp_pattern(pos: np.ndarray, centre: np.ndarray, scale_m: float) -> np.ndarray:
    return np.exp(-np.linalg.norm(pos - centre, axis=1) / scale_m)


def subject(rng: np.random.Generator, pos: np.ndarray) -> dict:
    """One subject's physiology: patterns (volts per unit), gains, rhythms, timing."""
    def near(names: list[str], spread_m: float) -> np.ndarray:
        return pos[[index_of(n) for n in names]].mean(axis=0) + rng.normal(0, spread_m, 3)

    sources = pos[rng.choice(N_CHANS - 1, 20, replace=False)]
    return {
        "background": np.stack([exp_pattern(pos, c, rng.uniform(0.03, 0.08)) for c in sources])
        * 6e-6 * rng.lognormal(0, 0.5),
        "sensor_v": 5e-6 * rng.lognormal(0, 0.3),
        "alpha": exp_pattern(pos, near(["O1", "O2", "Oz"], 0.015), 0.04)
        * 15e-6 * rng.lognormal(0, 0.7),
        "alpha_hz": rng.uniform(8.0, 13.0),
        "cpp": exp_pattern(pos, near(["CPz", "Pz"], 0.01), 0.05) * 15e-6
        * rng.lognormal(0, SUBJECT_SIZE_SD),
        "motor": [exp_pattern(pos, near([side], 0.01), 0.035) * rng.lognormal(0, SUBJECT_SIZE_SD)
                  for side in ("C3", "C4")],
        "beta_hz": rng.uniform(15.0, 25.0),
        "onset_s": rng.uniform(0.15, 0.35),
        "mean_rt_s": RT_MEAN_S + np.sqrt(1 - UNEXPLAINED_SHARE) * rng.normal(0, SUBJECT_RT_SD_S),
    }


def trial_rts(rng: np.random.Generator, s: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(recorded RT, RT the EEG carries) for n trials, the late ones dropped."""
    trial_sd = np.sqrt((RT_SD_S**2 - SUBJECT_RT_SD_S**2) * (1 - UNEXPLAINED_SHARE))
    encoded = s["mean_rt_s"] + rng.normal(0, trial_sd, n * 2)
    rt = encoded + rng.normal(0, np.sqrt(UNEXPLAINED_SHARE) * RT_SD_S, n * 2)
    early = rng.random(n * 2) < EARLY_SHARE
    encoded = np.where(early, rng.uniform(0.0, 0.5, n * 2), np.clip(encoded, 0.25, 3.0))
    rt = np.where(early, encoded, np.clip(rt, 0.25, 3.0))
    keep = np.flatnonzero(rt <= DEADLINE_S)[:n]
    return np.round(rt[keep] * SFREQ_HZ) / SFREQ_HZ, encoded[keep]


def simulate(rng: np.random.Generator, s: dict, rt_enc: np.ndarray, hand_right: np.ndarray,
             t: np.ndarray) -> np.ndarray:
    """(n, 129, len(t)) volts; t in seconds after the stimulus."""
    n, n_t = len(rt_enc), len(t)
    ar = np.empty((n, len(s["background"]), n_t))
    ar[..., 0] = rng.normal(0, 1, ar.shape[:2]) / np.sqrt(1 - 0.97**2)
    shocks = rng.normal(0, 1, ar.shape)
    for k in range(1, n_t):
        ar[..., k] = 0.97 * ar[..., k - 1] + shocks[..., k]
    eeg = np.einsum("sc,nst->nct", s["background"], ar * np.sqrt(1 - 0.97**2))
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
    size = rng.lognormal(0, TRIAL_SIZE_SD, (n, 1))
    centre, width = (s["onset_s"] + rt) / 2, np.maximum(rt - s["onset_s"], 0.05) / 6
    rise = 1.0 / (1.0 + np.exp(-(t - centre) / width))  # ~0.95 of the bound at the press
    cpp = np.where(t <= rt, rise, 0.95 * np.exp(-(t - rt) / 0.15))
    eeg += s["cpp"][None, :, None] * (size * cpp)[:, None]
    to_press = t - rt
    lrp = np.where((to_press > -0.5) & (to_press <= 0), -(1 + to_press / 0.5), 0.0) * 6e-6
    lrp += 5e-6 * np.exp(-0.5 * ((to_press - 0.15) / 0.06) ** 2)
    erd = 1 - 0.6 * np.clip(1 + to_press / 0.6, 0, 1) * (to_press <= 0) \
        - 0.6 * np.clip(1 - to_press / 0.4, 0, 1) * (to_press > 0) \
        + 0.3 * ((to_press > 0.6) & (to_press < 1.0))
    beta_phase = rng.uniform(0, 2 * np.pi, (n, 1))
    beta = 8e-6 * np.sin(2 * np.pi * s["beta_hz"] * t + beta_phase)
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
    cfg = WindowsConfig()
    folder = NightFolder(args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    pos = positions_m()
    margin, n_times = cfg.margin_samples, cfg.n_times
    t = (np.arange(n_times + 2 * margin) - margin) / SFREQ_HZ + cfg.window_start_s

    def chunks():
        for k in range(args.subjects):
            rng = np.random.default_rng([args.seed, k])
            s = subject(rng, pos)
            rt, enc = trial_rts(rng, s, args.windows_per_subject)
            hand = rng.random(len(rt)) < 0.5
            eeg = simulate(rng, s, enc, hand, t)
            n = len(rt)
            label = f"OTHER{k:04d}"
            yield {"eeg": eeg[..., margin:margin + n_times], "eeg_before": eeg[..., :margin],
                   "eeg_after": eeg[..., margin + n_times:], "rt": rt.astype(np.float32),
                   "subject": [label] * n, "release": [f"R{k % 5 + 1}"] * n,
                   "run": np.ones(n, np.int16), "trial": np.arange(n, dtype=np.int32),
                   "stim_onset_s": 10.0 + 5.0 * np.arange(n),
                   "response_onset_s": 10.0 + 5.0 * np.arange(n) + rt,
                   "hand": ["right" if h else "left" for h in hand],
                   "correct": np.ones(n, bool), "recording": np.full(n, k, np.int32)}

    n = write_cache_from_chunks(folder.windows, chunks(), cfg, "bench/othergen.py")
    split = write_split(folder.windows, folder.split, cfg)
    log.info("%d windows, %s -> %s", n, describe(split), folder.windows)
    subprocess.run([sys.executable, "jobs/features.py", "--windows", str(folder.windows),
                    "--out", str(folder.features)], cwd=REPO, check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
