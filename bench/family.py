"""A family of synthetic datasets, each draw's physiology taken from wide, realistic ranges:
benchmarks across physiologies, not on one.

Each draw (``--draw k``) picks its physiology once, then simulates its subjects with
bench/othergen.py's simulator (background from AR sources, alpha, CPP, readiness potential,
beta desynchronisation; nothing from overnight.hbn.synth) under that physiology, and adds
artefacts the real recordings carry: eye blinks at the frontal pole, muscle bursts at the
temporal sites, residual line noise. What is drawn, per draw:

- background: amplitude (2-15 uV per source), spectrum (AR(1) coefficient 0.90-0.99: white-ish
  to brown), spatial spread (1-6 cm at the nearest to 3-12 cm at the widest), 10-40 sources;
  sensor noise 2-10 uV; alpha 0-30 uV;
- the task: where the CPP and motor sources sit (jitter 0.5-3 cm per subject), how wide
  they spread (3-8 cm), how strong they are (CPP 4-25 uV, readiness 1.5-10 uV, beta 3-12 uV,
  its desynchronisation 20-80 %), how late the CPP starts (0.05-0.5 s after the stimulus);
- subjects: the lognormal sd of their task gain (0.2-1.0) and background gain (0.2-0.8),
  trial-to-trial size (0.2-0.9); the share of RT variance the CPP does not carry (0.2-0.5;
  the motor signals follow the press);
- artefacts: blinks (0-0.5 per second, 50-250 uV), muscle bursts (0-0.4 per second,
  5-40 uV, 20-45 Hz), line noise at 50 Hz (0-5 uV; at 100 Hz it sits at Nyquist).

RTs follow the real releases' statistics (REFERENCE), as in bench/othergen.py. It writes a
night folder (window cache with margins, split, features) and ``physiology.json``, the draw.

Usage: python bench/family.py --out DIR --draw K [--subjects 60] [--windows-per-subject 60]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from othergen import PHYSIOLOGY, SFREQ_HZ, Artefacts, write_dataset

from overnight.hbn.channels import FRONTAL_POLE, index_of

log = logging.getLogger("bench.family")
TEMPORAL = ("E45", "E108", "E44", "E114")  # near T7/T8: where jaw and temple muscles show
LINE_HZ = 50.0


def draw_physiology(draw: int) -> dict:
    """The physiology of draw ``draw``: othergen's keys, each from its range, and the
    artefacts' rates and sizes."""
    rng = np.random.default_rng([20261203, draw])

    def log_uniform(low: float, high: float) -> float:
        return float(np.exp(rng.uniform(np.log(low), np.log(high))))

    near = rng.uniform(0.01, 0.06)
    onset = rng.uniform(0.05, 0.4)
    return {
        **PHYSIOLOGY,
        "n_sources": int(rng.integers(10, 41)),
        "background_v": log_uniform(2e-6, 15e-6), "background_sd": rng.uniform(0.2, 0.8),
        "spread_m": (near, near + rng.uniform(0.02, 0.06)), "ar": rng.uniform(0.90, 0.99),
        "sensor_v": log_uniform(2e-6, 10e-6), "alpha_v": rng.uniform(0.0, 30e-6),
        "cpp_v": log_uniform(4e-6, 25e-6), "cpp_spread_m": rng.uniform(0.03, 0.08),
        "source_jitter_m": rng.uniform(0.005, 0.03), "motor_spread_m": rng.uniform(0.03, 0.06),
        "lrp_v": log_uniform(1.5e-6, 10e-6), "reafferent_v": log_uniform(1e-6, 8e-6),
        "beta_v": log_uniform(3e-6, 12e-6), "erd_depth": rng.uniform(0.2, 0.8),
        "onset_s": (onset, onset + 0.1), "subject_size_sd": rng.uniform(0.2, 1.0),
        "trial_size_sd": rng.uniform(0.2, 0.9), "unexplained_share": rng.uniform(0.2, 0.5),
        "blinks_per_s": rng.uniform(0.0, 0.5), "blink_v": log_uniform(50e-6, 250e-6),
        "bursts_per_s": rng.uniform(0.0, 0.4), "burst_v": log_uniform(5e-6, 40e-6),
        "line_v": rng.uniform(0.0, 5e-6),
    }


def artefacts_of(phys: dict) -> Artefacts:
    """What adds the draw's blinks, muscle bursts and line noise to a subject's windows."""
    frontal = [index_of(name) for name in FRONTAL_POLE]
    temporal = [index_of(name) for name in TEMPORAL]

    def add(rng: np.random.Generator, eeg: np.ndarray, t: np.ndarray) -> None:
        n, _, n_t = eeg.shape
        seconds = n_t / SFREQ_HZ
        gain = rng.lognormal(0, 0.4)  # subjects blink and tense differently
        for _ in range(rng.poisson(phys["blinks_per_s"] * gain * seconds * n)):
            k, centre = rng.integers(n), rng.uniform(t[0], t[-1])
            shape = np.exp(-0.5 * ((t - centre) / rng.uniform(0.05, 0.1)) ** 2)
            eeg[k, frontal] += phys["blink_v"] * rng.lognormal(0, 0.3) * shape
        for _ in range(rng.poisson(phys["bursts_per_s"] * gain * seconds * n)):
            k, start = rng.integers(n), rng.integers(n_t)
            stop = min(n_t, start + int(rng.uniform(0.1, 0.5) * SFREQ_HZ))
            hz = rng.uniform(20.0, 45.0)
            burst = np.sin(2 * np.pi * hz * t[start:stop] + rng.uniform(0, 2 * np.pi))
            eeg[k, temporal, start:stop] += phys["burst_v"] * burst * rng.normal(1, 0.2, (
                len(temporal), 1))
        phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
        eeg += phys["line_v"] * np.cos(2 * np.pi * LINE_HZ * t + phase).astype(np.float32)
    return add


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="night folder to write")
    parser.add_argument("--draw", type=int, required=True, help="which physiology")
    parser.add_argument("--subjects", type=int, default=60)
    parser.add_argument("--windows-per-subject", type=int, default=60)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    phys = draw_physiology(args.draw)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "physiology.json").write_text(json.dumps(phys, indent=2) + "\n")
    log.info("draw %d: %s", args.draw, ", ".join(f"{k} {v:.3g}" for k, v in phys.items()
                                                  if isinstance(v, float)))
    # subjects drawn apart from othergen's own (its seed 0, 1, ...)
    write_dataset(args.out, args.subjects, args.windows_per_subject, 1000 + args.draw, phys,
                  artefacts_of(phys), label=f"FAM{args.draw}S", made_by="bench/family.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
