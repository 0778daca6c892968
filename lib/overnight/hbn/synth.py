"""Synthetic HBN contrast-change-detection (CCD) data whose EEG carries the response time.

Two entry points share one physiology (one implementation per component, applied to a
time axis):

- ``generate_dataset`` writes a BIDS tree in the format of the real releases
  (``overnight.hbn.bids``): ``participants.tsv``, per run a recording (``.set`` or
  ``.bdf``) with its ``_events.tsv`` (break, block starts, trials with presses before the
  target and extra presses, no ``end_experiment``), ``_eeg.json`` and ``_channels.tsv``,
  and the ground truth in ``derivatives/synth/`` (``truth.tsv``, ``synth.json``).
- ``simulate_windows`` returns Challenge 1 windows (stimulus +0.5..+2.5 s) directly.

The model of a trial: the decision is reached at ``rt_encoded`` and the button is pressed
at ``rt = rt_encoded + unexplained``, the unexplained part (the motor time's variability)
holding ``unexplained_rt_share`` of the RT variance. A centro-parietal positivity (CPP)
ramps to a bound reached at the decision; beta desynchronisation and a motor potential
over the motor cortex contralateral to the responding hand are locked to the press itself,
as they are in real recordings (the press the events record is where the motor cortex
acts). Background: 1/f noise from spatially smooth sources plus sensor noise,
occipital alpha and frontal blinks; ``Cz`` (the reference) is flat. Units are volts and
every timing is in seconds, so 100 Hz and 500 Hz share the same physics. Everything is
deterministic from the seed; subject ``i`` draws from child ``i + 1`` of
``numpy.random.SeedSequence(seed)`` (child 0 draws the subject ids), so subjects do not
depend on each other's draws and a smaller dataset holds the first subjects of a larger one.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import math
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from overnight import cli
from overnight.atomic import atomic_path, write_json
from overnight.checks import check_int
from overnight.config import SynthConfig
from overnight.hbn.bids import (
    PARTICIPANT_COLUMNS,
    PARTICIPANTS_FILE,
    eeg_path,
    events_path,
    write_events,
    write_recording,
    write_sidecars,
)
from overnight.hbn.channels import (
    FRONTAL_POLE,
    N_CHANS,
    REFERENCE_CHANNEL,
    index_of,
    positions_m,
)
from overnight.hbn.events import (
    BREAK,
    CORRECT_FEEDBACK,
    EVENT_CODES,
    FILE_END,
    NON_TARGET_FEEDBACK,
    TRIAL_START,
)
from overnight.provenance import code_version
from overnight.units import to_samples

TRUTH_COLUMNS = ("participant_id", "run", "trial", "stim_onset_s", "rt_s", "rt_encoded_s",
                 "hand")
N_RELEASES = 5  # subjects cycle through R1..R5 (R5 is HBN's validation release)
P_MISSING_SCORE = 0.05  # a psychopathology score is n/a in participants.tsv

# Behaviour (seconds); the RT distribution is set by SynthConfig.
RT_RANGE_S = (0.3, 3.5)  # RTs drawn from the normal part are clipped to this range
P_NO_RESPONSE = 0.05
P_DOUBLE_PRESS = 0.08  # a second press after the first (feedback non_target)
P_WRONG_HAND = 0.03  # press with the hand opposite the target: sad_face
# Quirks of the real files (REFERENCE, counts on R1): a press before the target (feedback
# non_target, 1,184 of 8,536 trials), a trial without a target (64 of 8,536), a file of two
# blocks, a file without a feedback column.
P_PRESS_BEFORE_TARGET = 0.14
P_NO_TARGET = 0.01
P_TWO_BLOCKS = 0.15
P_NO_FEEDBACK_COLUMN = 0.05

# Run timing (seconds, uniform ranges). A run holds one block of trials_per_run trials, or
# two; it opens with "break cnt" at 0 and ends with "break cnt" and "9999", as real files.
LEAD_IN_S = (5.0, 30.0)  # recording start to the first block start
BLOCK_TO_TRIAL_S = (2.0, 6.0)  # block start to its first trial start
TRIAL_TO_STIM_S = (1.5, 3.0)  # contrastTrial_start to the target (stimulus)
EARLY_PRESS_S = (0.2, 1.2)  # a press before the target comes this long after the start
SECOND_PRESS_S = (0.15, 0.7)  # first to second press of a double press
ITI_S = (0.25, 0.5)  # last press (or time-out) to the next trial start
NO_RESPONSE_TIMEOUT_S = 3.6  # a trial without a press ends this long after the stimulus
BREAK_S = (3.0, 6.0)  # the closing "break cnt" to the last row, "9999"
TAIL_S = (0.5, 1.5)  # the last row to the end of the recording (then whole seconds)
WINDOW_S = (0.5, 2.5)  # Challenge 1 window after the stimulus (REFERENCE)
MIN_AFTER_STIM_S = 2.6  # recordings run at least this long after the last stimulus

# Background EEG (volts; a channel's total std is about 1e-4 V at 100 Hz)
SENSOR_NOISE_V = 1e-4  # independent 1/f noise per channel
SOURCE_NOISE_V = 4e-5  # each spatially smooth 1/f source, at its centre
N_NOISE_SOURCES = 8
SOURCE_WIDTH_M = (0.03, 0.06)  # Gaussian fall-off of a noise source, metres
PINK_KNEE_HZ = 1.0  # the 1/f spectrum flattens below this
HIGHPASS_HZ = 0.5  # and rolls off below this, as the challenge's 0.5-50 Hz filter does
UNIT_BAND_HZ = 50.0  # 1/f noise has unit variance within 0..50 Hz
ALPHA_V = 4e-5  # occipital alpha std at O1/O2/Oz
ALPHA_HZ = (8.5, 11.5)  # subject's alpha peak
ALPHA_SD_HZ = 1.0  # spectral width: the envelope waxes and wanes over ~0.5 s
BLINK_V = 1e-4  # typical blink peak at the frontal pole
BLINK_RATE_HZ = 0.2
BLINK_S = 0.3  # blink duration (raised cosine)

# Task signals (volts, seconds): the CPP at the decision, the motor signals at the press.
# The amplitudes are those of children's large ERPs rather than adults', against 1e-4 V of
# background.
CPP_BOUND_V = 5e-5  # CPP at the bound, centred between CPz and Pz
CPP_ONSET_S = (0.2, 0.3)  # CPP build-up starts this long after the stimulus
CPP_DECAY_S = 0.3  # linear fall back to zero after the response
CPP_BOUND_SD = 0.1  # lognormal trial-to-trial bound variability
MIN_RISE_S = 0.05  # shortest CPP build-up (fast guesses)
BETA_V = 3e-5  # beta std at C3/C4: a clear spectral peak
BETA_HZ = (17.0, 24.0)  # subject's beta peak
BETA_SD_HZ = 3.0
ERD_LEAD_S = 0.5  # beta power starts dropping this long before the response
ERD_RECOVERY_S = 0.6  # and recovers over this long after it
ERD_DEPTH = (0.6, 0.2)  # amplitude drop (contralateral, ipsilateral) at the response
MOTOR_V = 3e-5  # negative motor potential over contralateral motor cortex
MOTOR_LEAD_S = 0.03  # its peak precedes the press by this much
MOTOR_SD_S = 0.03  # Gaussian width: a ~100 ms deflection
TASK_WIDTH_M = 0.045  # Gaussian fall-off of the fixed task patterns, metres

SEGMENT_MARGIN_S = 0.25  # simulate_windows: simulated time on each side of a window
MAX_BATCH_VALUES = 1 << 22  # simulate_windows: channels x samples per batch, bounds memory

_ID_CHARS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
_STAGING = ".synth-partial"  # subjects are written here, then renamed into place


@dataclass(frozen=True)
class _Subject:
    """One synthetic participant: demographics and the physiology parameters."""

    label: str  # BIDS label, "NDAR" + 8 characters
    release: str
    sex: str
    age: float
    scores: tuple[float, ...]  # p_factor, attention, internalizing, externalizing; NaN: n/a
    ehq_total: float  # handedness score, -100..100
    rt_offset_s: float  # subject mean RT minus rt_mean_s (before scaling by the share)
    gain: float  # multiplies the task signals
    latency_s: float  # shifts the subject's CPP onset (the harder setting's latency spread)
    noise_scale: float  # multiplies the background
    alpha_hz: float
    beta_hz: float
    mixing_v: np.ndarray  # (n_signals, N_CHANS): volts per unit of each source signal


@dataclass(frozen=True)
class _Responses:
    """Behaviour of n trials that get a response."""

    rt_s: np.ndarray  # what the press says, on the sample grid
    rt_encoded_s: np.ndarray  # when the decision is reached (the CPP's bound)
    target_right: np.ndarray  # bool: right_target
    hand_right: np.ndarray  # bool: pressed with the right hand


@dataclass(frozen=True)
class _RunPlan:
    """One run: its events, duration and per-trial truth."""

    events: list[dict[str, Any]]
    duration_s: float
    stim_s: np.ndarray  # (n_trials,) stimulus onsets
    rt_s: np.ndarray  # recorded RT; NaN without a recorded press
    rt_encoded_s: np.ndarray  # NaN when the subject did not respond
    hand_right: np.ndarray  # bool, meaningful where rt_encoded_s is finite
    counts: Counter[str]


# --------------------------------------------------------------------------- public API


def generate_dataset(root: Path, cfg: SynthConfig, progress: bool = True) -> dict[str, Any]:
    """Write a synthetic HBN CCD BIDS tree under ``root``.

    Each subject is written into a staging folder and renamed into place;
    ``dataset_description.json`` is written last, so its presence marks a complete tree.
    A previous synthetic tree in ``root`` is replaced.

    Parameters
    ----------
    root : Path
        BIDS root; created if missing. It must be empty or hold a synthetic tree.
    cfg : SynthConfig
        Subjects, runs, trials, rate, format, unexplained RT share and seed.
    progress : bool, default True
        Show a progress bar over subjects.

    Returns
    -------
    dict
        ``subjects``, ``recordings``, ``trials`` and ``seconds`` (wall time).

    Raises
    ------
    TypeError
        ``root`` is not a path or ``cfg`` is not a SynthConfig.
    ValueError
        A setting is out of range, or ``root`` holds something other than a synthetic tree.
    """
    if not isinstance(root, (str, Path)):
        raise TypeError(f"root={root!r}: expected a pathlib.Path or str")
    if not isinstance(cfg, SynthConfig):
        raise TypeError(f"cfg={cfg!r}: expected an overnight.config.SynthConfig")
    started = time.perf_counter()
    root = Path(root)
    staging = _prepare_root(root)
    subjects = _draw_subjects(cfg.seed, cfg.n_subjects, cfg)
    if progress:
        subjects = cli.progress(subjects, total=cfg.n_subjects, desc="synth", unit="subject")
    truth: list[dict[str, str]] = []
    participants: list[dict[str, str]] = []
    counts: Counter[str] = Counter()
    for subject, rng in subjects:
        truth += _write_subject(root, staging, subject, rng, cfg, counts)
        participants.append(_participant_row(subject, cfg.runs_per_subject))
    labels = {row["participant_id"] for row in participants}
    for stale in root.glob("sub-*"):
        if stale.name not in labels:
            shutil.rmtree(stale)
    staging.rmdir()
    _write_tsv(root / PARTICIPANTS_FILE, PARTICIPANT_COLUMNS, participants)
    _write_tsv(root / "derivatives" / "synth" / "truth.tsv", TRUTH_COLUMNS, truth)
    write_json(root / "derivatives" / "synth" / "synth.json", _provenance(cfg, counts, truth))
    write_json(root / "dataset_description.json", _dataset_description())
    return {"subjects": cfg.n_subjects, "recordings": cfg.n_subjects * cfg.runs_per_subject,
            "trials": counts["trials"], "seconds": round(time.perf_counter() - started, 3)}


def simulate_windows(n_windows: int, *, n_subjects: int, sfreq_hz: float = 100.0,
                     seed: int = 0, unexplained_rt_share: float = 0.25,
                     margin_s: float = 0.0) -> dict[str, np.ndarray]:
    """Challenge 1 windows (stimulus +0.5..+2.5 s) with the physiology of the BIDS tree.

    Every window has a response. Windows go to subjects in turn (window ``i`` to subject
    ``i % n_subjects``); the subjects are those ``generate_dataset`` draws from ``seed``.
    Call in chunks with different seeds for large sets (each chunk then has its own
    subjects).

    Parameters
    ----------
    n_windows : int
        Number of windows, at least 1.
    n_subjects : int
        Number of subjects, at least 1.
    sfreq_hz : float, default 100.0
        Sampling rate, one of ``overnight.config.SYNTH_SFREQS_HZ``.
    seed : int, default 0
        Non-negative seed.
    unexplained_rt_share : float, default 0.25
        Share of RT variance the EEG does not carry, 0..1.
    margin_s : float, default 0.0
        Signal returned on each side of every window (``before``, ``after``), seconds.

    Returns
    -------
    dict
        ``eeg`` (n, 129, 2 s x sfreq_hz) float32 volts, ``rt`` and ``rt_encoded`` (n,)
        float32 seconds, ``subject`` (n,) str BIDS labels, ``release`` (n,) str,
        ``hand`` (n,) str ``"left"``/``"right"``; with a margin, ``before`` and ``after``
        (n, 129, margin) float32 volts.

    Raises
    ------
    TypeError, ValueError
        An argument has the wrong type or is out of range.
    """
    check_int("n_windows", n_windows, minimum=1)
    # The config owns the allowed values of the rest, and the default behaviour.
    behaviour = SynthConfig(n_subjects=n_subjects, sfreq_hz=sfreq_hz, seed=seed,
                            unexplained_rt_share=unexplained_rt_share)
    window_samples = to_samples(WINDOW_S[1] - WINDOW_S[0], sfreq_hz)
    margin = to_samples(margin_s, sfreq_hz)
    first = to_samples(SEGMENT_MARGIN_S, sfreq_hz) + margin
    n_segment = window_samples + 2 * first
    times_s = np.arange(n_segment) / sfreq_hz
    stim_s = -(WINDOW_S[0] - first / sfreq_hz)  # segments start a margin before the window
    window = slice(first - margin, first + window_samples + margin)
    batch = max(1, MAX_BATCH_VALUES // (N_CHANS * n_segment))
    out = {
        "eeg": np.empty((n_windows, N_CHANS, window_samples + 2 * margin), np.float32),
        "rt": np.empty(n_windows, np.float32),
        "rt_encoded": np.empty(n_windows, np.float32),
        "subject": np.empty(n_windows, "<U12"),
        "release": np.empty(n_windows, "<U3"),
        "hand": np.empty(n_windows, "<U5"),
    }
    owner = np.arange(n_windows) % n_subjects
    for index, (subject, rng) in enumerate(_draw_subjects(seed, n_subjects)):
        rows = np.flatnonzero(owner == index)
        responses = _draw_responses(rng, subject, rows.size, behaviour, sfreq_hz)
        out["rt"][rows] = responses.rt_s
        out["rt_encoded"][rows] = responses.rt_encoded_s
        out["subject"][rows] = subject.label
        out["release"][rows] = subject.release
        out["hand"][rows] = np.where(responses.hand_right, "right", "left")
        for start in range(0, rows.size, batch):
            part = slice(start, start + batch)
            rt_encoded = responses.rt_encoded_s[part, None]
            stim = np.full_like(rt_encoded, stim_s)
            segments = _simulate_eeg(rng, subject, times_s, sfreq_hz, stim, rt_encoded,
                                     responses.rt_s[part, None],
                                     responses.hand_right[part, None])
            out["eeg"][rows[part]] = segments[..., window]
    if margin:
        wide = out.pop("eeg")
        out.update(eeg=wide[..., margin:margin + window_samples], before=wide[..., :margin],
                   after=wide[..., margin + window_samples:])
    return out


# --------------------------------------------------------------------------- subjects


def _draw_subjects(seed: int, n_subjects: int, variation: SynthConfig | None = None
                   ) -> list[tuple[_Subject, np.random.Generator]]:
    """Subjects with their own generators; subject ``i`` uses child ``i + 1`` of the seed.
    ``variation`` (how strong the task signals are and how far subjects differ) defaults
    to the default dataset's."""
    variation = variation or SynthConfig()
    seeds = np.random.SeedSequence(seed).spawn(n_subjects + 1)
    label_rng = np.random.default_rng(seeds[0])
    labels: list[str] = []
    while len(labels) < n_subjects:  # unique ids; a repeat (odds ~1e-12) is drawn again
        label = "NDAR" + "".join(label_rng.choice(_ID_CHARS, 8))
        if label not in labels:
            labels.append(label)
    subjects = []
    for index, (label, child) in enumerate(zip(labels, seeds[1:], strict=True)):
        rng = np.random.default_rng(child)
        subjects.append((_draw_subject(rng, label, f"R{index % N_RELEASES + 1}", variation),
                         rng))
    return subjects


def _draw_subject(rng: np.random.Generator, label: str, release: str,
                  variation: SynthConfig) -> _Subject:
    gain, noise_scale = rng.lognormal(0.0, variation.subject_sd, 2)
    gain *= variation.task_signal_scale
    scores = tuple(float(x) for x in rng.normal(0.0, 1.0, 4))
    # Background sources: random centres on the net, random widths and signs.
    positions = positions_m()
    centres = positions[rng.choice(N_CHANS - 1, N_NOISE_SOURCES, replace=False)]
    widths = rng.uniform(*SOURCE_WIDTH_M, N_NOISE_SOURCES)
    signs = rng.choice([-1.0, 1.0], N_NOISE_SOURCES)
    sources = np.stack([sign * _gaussian_pattern(c, w)
                        for c, w, sign in zip(centres, widths, signs, strict=True)])
    # The harder setting moves each subject's task sources and shifts their timing; draws
    # are made only then, so the default dataset stays the same.
    shift_m = (rng.normal(0.0, variation.spatial_sd_m, (5, 3)) if variation.spatial_sd_m
               else np.zeros((5, 3)))
    latency_s = float(rng.normal(0.0, variation.latency_sd_s)) if variation.latency_sd_s else 0.0
    occipital, frontal, left_motor, right_motor, cpp = _task_patterns(shift_m)
    mixing = np.vstack([
        sources * SOURCE_NOISE_V * noise_scale,
        occipital * ALPHA_V * noise_scale,
        frontal * BLINK_V,
        left_motor * BETA_V * gain, right_motor * BETA_V * gain,
        left_motor * MOTOR_V * gain, right_motor * MOTOR_V * gain,
        cpp * CPP_BOUND_V * gain,
    ])
    fields = dict(
        label=label, release=release, sex=str(rng.choice(["M", "F"])),
        age=float(rng.uniform(5.0, 21.0)),
        rt_offset_s=float(rng.normal(0.0, variation.subject_rt_sd_s)), gain=float(gain),
        latency_s=latency_s,
        noise_scale=float(noise_scale), alpha_hz=float(rng.uniform(*ALPHA_HZ)),
        beta_hz=float(rng.uniform(*BETA_HZ)), mixing_v=mixing.astype(np.float32))
    missing = rng.random(len(scores)) < P_MISSING_SCORE
    return _Subject(scores=tuple(math.nan if m else x for x, m in zip(scores, missing,
                                                                      strict=True)),
                    ehq_total=float(rng.uniform(-100.0, 100.0)), **fields)


def _participant_row(subject: _Subject, runs: int) -> dict[str, str]:
    """A row in the real releases' columns; a missing score is n/a, as there."""
    scores = {name: "n/a" if math.isnan(value) else f"{value:.3f}"
              for name, value in zip(("p_factor", "attention", "internalizing",
                                      "externalizing"), subject.scores, strict=True)}
    tasks = {column: "available" for column in PARTICIPANT_COLUMNS[11:]}
    for run in range(runs + 1, 4):
        tasks[f"contrastChangeDetection_{run}"] = "unavailable"
    return {"participant_id": f"sub-{subject.label}", "release_number": subject.release,
            "sex": subject.sex, "age": f"{subject.age:.4f}",
            "ehq_total": f"{subject.ehq_total:.2f}", "commercial_use": "Yes",
            "full_pheno": "Yes", **scores, **tasks}


# --------------------------------------------------------------------------- behaviour


def _on_grid(t_s: Any, sfreq_hz: float) -> Any:
    """Times rounded to the sample grid, as event onsets are."""
    return to_samples(np.asarray(t_s, dtype=np.float64), sfreq_hz) / sfreq_hz


def _draw_responses(rng: np.random.Generator, subject: _Subject, n: int, cfg: SynthConfig,
                    sfreq_hz: float) -> _Responses:
    """RTs split into encoded and unexplained parts, target sides and responding hands.

    ``rt_encoded`` (subject offset plus trial variation) holds ``1 - share`` of the RT
    variance and the independent unexplained part ``share`` (``unexplained_rt_share``);
    fast guesses are pressed before the window opens and are fully encoded (the press is a
    real motor event).
    """
    share = cfg.unexplained_rt_share
    trial_sd_s = math.sqrt(cfg.rt_sd_s**2 - cfg.subject_rt_sd_s**2)
    encoded = cfg.rt_mean_s + math.sqrt(1.0 - share) * (
        subject.rt_offset_s + rng.normal(0.0, trial_sd_s, n))
    rt = encoded + rng.normal(0.0, math.sqrt(share) * cfg.rt_sd_s, n)
    early = rng.random(n) < cfg.early_press_share
    early_rt = rng.uniform(cfg.early_press_min_s, WINDOW_S[0], n)
    target_right = rng.random(n) < 0.5
    wrong_hand = rng.random(n) < P_WRONG_HAND
    return _Responses(
        rt_s=_on_grid(np.where(early, early_rt, np.clip(rt, *RT_RANGE_S)), sfreq_hz),
        rt_encoded_s=np.where(early, early_rt, np.clip(encoded, *RT_RANGE_S)),
        target_right=target_right, hand_right=target_right ^ wrong_hand)


def _event(onset_s: float, value: str, feedback: str | None = None) -> dict[str, Any]:
    return {"onset": float(onset_s), "value": value, "event_code": EVENT_CODES[value],
            "feedback": feedback}


def _plan_run(rng: np.random.Generator, subject: _Subject, cfg: SynthConfig) -> _RunPlan:
    """Events of one run, as the real files write them: break, block start(s), trials with
    their quirks, break, 9999 (no end_experiment). ``cfg.trials_per_run`` per block."""
    sfreq_hz = cfg.sfreq_hz
    two_blocks = bool(rng.random() < P_TWO_BLOCKS)
    n_blocks = 2 if two_blocks else 1
    trials_per_block = cfg.trials_per_run
    n_trials = trials_per_block * n_blocks
    responses = _draw_responses(rng, subject, n_trials, cfg, sfreq_hz)
    has_target = rng.random(n_trials) >= P_NO_TARGET
    # A press after the deadline is no response: the subject missed the trial.
    responded = ((rng.random(n_trials) >= P_NO_RESPONSE) & has_target
                 & (responses.rt_s <= cfg.response_deadline_s))
    double = (rng.random(n_trials) < P_DOUBLE_PRESS) & responded
    early = rng.random(n_trials) < P_PRESS_BEFORE_TARGET
    early_press_s = rng.uniform(*EARLY_PRESS_S, n_trials)
    early_hand = np.where(rng.random(n_trials) < 0.5, "left", "right")
    second_press_s = rng.uniform(*SECOND_PRESS_S, n_trials)
    stim_delay_s = rng.uniform(*TRIAL_TO_STIM_S, n_trials)
    iti_s = rng.uniform(*ITI_S, n_trials)
    block_pause_s = rng.uniform(*BLOCK_TO_TRIAL_S, n_blocks)
    break_s, tail_s = rng.uniform(*BREAK_S), rng.uniform(*TAIL_S)

    grid = functools.partial(_on_grid, sfreq_hz=sfreq_hz)
    events = [_event(0.0, BREAK)]
    stim_s = np.full(n_trials, np.nan)
    t_s = float(grid(rng.uniform(*LEAD_IN_S)))
    for i in range(n_trials):
        if i % trials_per_block == 0:
            block = i // trials_per_block
            if block:
                events.append(_event(t_s, BREAK))
                t_s = float(grid(t_s + block_pause_s[block]))
            events.append(_event(t_s, f"contrastChangeB{block + 1}_start"))
            t_s = float(grid(t_s + block_pause_s[block]))
        events.append(_event(t_s, TRIAL_START))
        if early[i]:  # a press before the target: ignored by the trial logic
            press_s = float(grid(t_s + min(early_press_s[i], 0.8 * stim_delay_s[i])))
            events.append(_event(press_s, f"{early_hand[i]}_buttonPress", NON_TARGET_FEEDBACK))
        stim = float(grid(t_s + stim_delay_s[i]))
        last_s = stim + NO_RESPONSE_TIMEOUT_S
        if has_target[i]:
            stim_s[i] = stim
            side = "right" if responses.target_right[i] else "left"
            events.append(_event(stim, f"{side}_target"))
        if responded[i]:
            hand = "right" if responses.hand_right[i] else "left"
            last_s = stim + responses.rt_s[i]
            events.append(_event(last_s, f"{hand}_buttonPress",
                                 CORRECT_FEEDBACK if hand == side else "sad_face"))
            if double[i]:
                last_s = float(grid(last_s + second_press_s[i]))
                events.append(_event(last_s, f"{hand}_buttonPress", NON_TARGET_FEEDBACK))
        t_s = float(grid(last_s + iti_s[i]))
    end_s = float(grid(t_s + break_s))
    events += [_event(t_s, BREAK), _event(end_s, FILE_END)]
    # Whole seconds, so BDF's 1 s data records need no padding.
    duration_s = math.ceil(max(end_s + tail_s, np.nanmax(stim_s) + MIN_AFTER_STIM_S))

    counts = Counter(trials=n_trials, responses=int(responded.sum()),
                     no_response=int((has_target & ~responded).sum()),
                     no_target=int((~has_target).sum()),
                     press_before_target=int(early.sum()),
                     double_press=int(double.sum()),
                     early_press=int((responded & (responses.rt_s < WINDOW_S[0])).sum()),
                     wrong_hand=int((responded & (responses.target_right
                                                  != responses.hand_right)).sum()),
                     two_blocks=int(two_blocks))
    return _RunPlan(events=events, duration_s=float(duration_s), stim_s=stim_s,
                    rt_s=np.where(responded, responses.rt_s, np.nan),
                    rt_encoded_s=np.where(responded, responses.rt_encoded_s, np.nan),
                    hand_right=responses.hand_right, counts=counts)


# --------------------------------------------------------------------------- physiology


def _gaussian_pattern(centre_m: np.ndarray, width_m: float) -> np.ndarray:
    """(N_CHANS,) spatial pattern: 1 at ``centre_m``, Gaussian fall-off with 3-D distance."""
    distance2 = ((positions_m() - centre_m) ** 2).sum(axis=1)
    return np.exp(-distance2 / (2.0 * width_m**2))


def _task_patterns(shift_m: np.ndarray) -> np.ndarray:
    """(5, N_CHANS): occipital, frontal pole, left motor (C3), right motor (C4), CPP, each
    centre moved by its row of ``shift_m`` (5, 3) metres."""
    positions = positions_m()

    def centre(names: Sequence[str]) -> np.ndarray:
        return positions[[index_of(name) for name in names]].mean(axis=0)

    centres = [centre(["O1", "O2", "Oz"]), centre(FRONTAL_POLE), centre(["C3"]),
               centre(["C4"]), centre(["CPz", "Pz"])]
    return np.stack([_gaussian_pattern(c + d, TASK_WIDTH_M)
                     for c, d in zip(centres, shift_m, strict=True)])


@functools.lru_cache(maxsize=1)
def _pink_norm() -> float:
    """Integral of the unnormalised 1/f spectrum over 0..UNIT_BAND_HZ."""
    freqs_hz = np.linspace(0.0, UNIT_BAND_HZ, 200_001)
    return float(np.trapezoid(_pink_shape(freqs_hz), freqs_hz))


def _pink_shape(freqs_hz: np.ndarray) -> np.ndarray:
    highpass = freqs_hz**2 / (freqs_hz**2 + HIGHPASS_HZ**2)
    return highpass / (freqs_hz + PINK_KNEE_HZ)


def _pink_psd(freqs_hz: np.ndarray) -> np.ndarray:
    """One-sided 1/f spectrum (per Hz) with unit variance within 0..UNIT_BAND_HZ."""
    return _pink_shape(freqs_hz) / _pink_norm()


def _peak_psd(freqs_hz: np.ndarray, centre_hz: float, sd_hz: float) -> np.ndarray:
    """One-sided Gaussian spectral peak with unit variance: a waxing and waning rhythm."""
    z = (freqs_hz - centre_hz) / sd_hz
    return np.exp(-0.5 * z**2) / (sd_hz * math.sqrt(2.0 * math.pi))


def _shaped_noise(rng: np.random.Generator, shape: tuple[int, ...], sfreq_hz: float,
                  psd: Callable[[np.ndarray], np.ndarray], scale: float = 1.0) -> np.ndarray:
    """Gaussian float32 noise along the last axis with one-sided spectral density ``psd(f)``.

    Drawn as the spectrum of white noise (unit variance, one-sided density 2 / sfreq),
    saving a forward FFT: parts of variance n/2 per bin, n at DC and Nyquist whose
    imaginary part irfft ignores. Scaling it by sqrt(psd * sfreq / 2) gives the wanted
    density at any rate and length; ``scale`` multiplies the result.
    """
    n_times = shape[-1]
    freqs_hz = np.fft.rfftfreq(n_times, 1.0 / sfreq_hz)
    gain = np.sqrt(psd(freqs_hz) * sfreq_hz / 2.0 * n_times / 2.0) * scale
    gain[0] *= math.sqrt(2.0)
    if n_times % 2 == 0:
        gain[-1] *= math.sqrt(2.0)
    parts = rng.standard_normal((*shape[:-1], freqs_hz.size, 2), dtype=np.float32)
    spectrum = parts.view(np.complex64)[..., 0]
    spectrum *= gain.astype(np.float32)
    return np.fft.irfft(spectrum, n=n_times)


def _cpp(t_s: np.ndarray, onset_s: np.ndarray, rt_s: np.ndarray) -> np.ndarray:
    """CPP in units of its bound: linear build-up from onset to the response, then decay."""
    rise = np.clip((t_s - onset_s) / (rt_s - onset_s), 0.0, 1.0)
    fall = np.clip(1.0 - (t_s - rt_s) / CPP_DECAY_S, 0.0, 1.0)
    return np.where(t_s <= rt_s, rise, fall)


def _desync(t_press_s: np.ndarray) -> np.ndarray:
    """Beta desynchronisation, 0..1: falls over ERD_LEAD_S to the press, then recovers."""
    fall = np.clip(1.0 + t_press_s / ERD_LEAD_S, 0.0, 1.0)
    recover = np.clip(1.0 - t_press_s / ERD_RECOVERY_S, 0.0, 1.0)
    return np.where(t_press_s <= 0.0, fall, recover)


def _motor_potential(t_press_s: np.ndarray) -> np.ndarray:
    """Sharp negative deflection peaking MOTOR_LEAD_S before the press, unit peak."""
    return -np.exp(-0.5 * ((t_press_s + MOTOR_LEAD_S) / MOTOR_SD_S) ** 2)


def _blinks(rng: np.random.Generator, n_segments: int, times_s: np.ndarray) -> np.ndarray:
    """(n_segments, n_times) blinks: Poisson times, raised-cosine bumps of unit-ish peak."""
    span_s = times_s[-1] - times_s[0] + BLINK_S
    counts = rng.poisson(BLINK_RATE_HZ * span_s, n_segments)
    onsets_s = rng.uniform(times_s[0] - BLINK_S, times_s[-1], (n_segments, counts.max()))
    peaks = rng.lognormal(0.0, 0.3, onsets_s.shape) * (np.arange(counts.max()) < counts[:, None])
    phase = (times_s - onsets_s[..., None]) / BLINK_S  # (segments, blinks, times)
    bumps = np.where((phase >= 0.0) & (phase <= 1.0), 0.5 * (1.0 - np.cos(2 * np.pi * phase)),
                     0.0)
    return np.einsum("sb,sbt->st", peaks, bumps)


def _simulate_eeg(rng: np.random.Generator, subject: _Subject, times_s: np.ndarray,
                  sfreq_hz: float, stim_s: np.ndarray, rt_encoded_s: np.ndarray,
                  rt_s: np.ndarray, hand_right: np.ndarray) -> np.ndarray:
    """EEG of segments sharing one time axis, in volts: (n_segments, N_CHANS, n_times).

    ``stim_s``, ``rt_encoded_s`` (the decision), ``rt_s`` (the press) and ``hand_right``
    are (n_segments, n_trials): the responded trials of each segment, stimuli on
    ``times_s``.
    """
    n_segments = stim_s.shape[0]
    n_times = times_s.size
    onset_s = np.minimum(rng.uniform(*CPP_ONSET_S, stim_s.shape) + subject.latency_s,
                         rt_encoded_s - MIN_RISE_S)
    bound = rng.lognormal(0.0, CPP_BOUND_SD, stim_s.shape)
    t_stim_s = times_s - stim_s[..., None]  # (segments, trials, times)
    t_press_s = t_stim_s - rt_s[..., None]
    cpp = np.einsum("sk,skt->st", bound, _cpp(t_stim_s, onset_s[..., None],
                                               rt_encoded_s[..., None]))
    # Per hemisphere (left = C3, right = C4): contralateral to the hand moves most.
    contra = np.stack([hand_right, ~hand_right], axis=1)  # (segments, 2, trials)
    depth = np.where(contra, ERD_DEPTH[0], ERD_DEPTH[1])
    beta_gain = 1.0 - np.einsum("shk,skt->sht", depth, _desync(t_press_s))
    motor = np.einsum("shk,skt->sht", contra.astype(float), _motor_potential(t_press_s))
    signals = np.concatenate([
        _shaped_noise(rng, (n_segments, N_NOISE_SOURCES, n_times), sfreq_hz, _pink_psd),
        _shaped_noise(rng, (n_segments, 1, n_times), sfreq_hz,
                      functools.partial(_peak_psd, centre_hz=subject.alpha_hz,
                                        sd_hz=ALPHA_SD_HZ)),
        _blinks(rng, n_segments, times_s)[:, None],
        _shaped_noise(rng, (n_segments, 2, n_times), sfreq_hz,
                      functools.partial(_peak_psd, centre_hz=subject.beta_hz,
                                        sd_hz=BETA_SD_HZ)) * beta_gain,
        motor,
        cpp[:, None],
    ], axis=1, dtype=np.float32)  # (segments, signals, times)
    eeg = _shaped_noise(rng, (n_segments, N_CHANS, n_times), sfreq_hz, _pink_psd,
                        scale=SENSOR_NOISE_V * subject.noise_scale)
    eeg += subject.mixing_v.T @ signals  # (segments, N_CHANS, times)
    eeg[:, index_of(REFERENCE_CHANNEL)] = 0.0  # the recording reference is flat
    return eeg


# --------------------------------------------------------------------------- writing


def _prepare_root(root: Path) -> Path:
    """Check ``root`` may be (over)written, mark it incomplete, return a clean staging dir."""
    staging = root / _STAGING
    ours = (root / "derivatives" / "synth" / "synth.json").exists() or staging.exists()
    if root.exists() and any(root.iterdir()) and not ours:
        raise ValueError(f"root={str(root)!r} is not empty and holds no synthetic dataset "
                         "(derivatives/synth/synth.json); expected an empty or synthetic root")
    (root / "dataset_description.json").unlink(missing_ok=True)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _write_subject(root: Path, staging: Path, subject: _Subject, rng: np.random.Generator,
                   cfg: SynthConfig, counts: Counter[str]) -> list[dict[str, str]]:
    """Write one subject's runs into ``staging``, move them into place, return truth rows."""
    truth = []
    for run in range(1, cfg.runs_per_subject + 1):
        plan = _plan_run(rng, subject, cfg)
        counts.update(plan.counts)
        has_eeg = np.isfinite(plan.rt_encoded_s)
        times_s = np.arange(math.ceil(plan.duration_s * cfg.sfreq_hz)) / cfg.sfreq_hz
        eeg = _simulate_eeg(rng, subject, times_s, cfg.sfreq_hz, plan.stim_s[None, has_eeg],
                            plan.rt_encoded_s[None, has_eeg], plan.rt_s[None, has_eeg],
                            plan.hand_right[None, has_eeg])
        path = eeg_path(staging, subject.label, run, cfg.fmt)
        write_recording(path, eeg[0], cfg.sfreq_hz)
        feedback = bool(rng.random() >= P_NO_FEEDBACK_COLUMN)
        counts["no_feedback_column"] += int(not feedback)
        write_events(events_path(path), plan.events, cfg.sfreq_hz, feedback=feedback)
        write_sidecars(path, cfg.sfreq_hz, plan.duration_s)
        truth += _truth_rows(subject, run, plan)
    target = root / f"sub-{subject.label}"
    shutil.rmtree(target, ignore_errors=True)
    (staging / target.name).rename(target)
    return truth


def _truth_rows(subject: _Subject, run: int, plan: _RunPlan) -> list[dict[str, str]]:
    def seconds(value: float) -> str:
        return "n/a" if np.isnan(value) else f"{value:.4f}"

    return [{"participant_id": f"sub-{subject.label}", "run": str(run), "trial": str(i),
             "stim_onset_s": seconds(stim), "rt_s": seconds(rt), "rt_encoded_s": seconds(enc),
             "hand": "n/a" if np.isnan(enc) else ("right" if right else "left")}
            for i, (stim, rt, enc, right) in enumerate(zip(
                plan.stim_s, plan.rt_s, plan.rt_encoded_s, plan.hand_right, strict=True))]


def _write_tsv(path: Path, columns: Sequence[str], rows: Iterable[dict[str, str]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([row[col] for col in columns] for row in rows)


def _provenance(cfg: SynthConfig, counts: Counter[str],
                truth: list[dict[str, str]]) -> dict[str, Any]:
    recorded = [row for row in truth if row["rt_s"] != "n/a"]
    rt = np.array([float(row["rt_s"]) for row in recorded])
    unexplained = rt - np.array([float(row["rt_encoded_s"]) for row in recorded])
    realised = float(unexplained.var() / rt.var()) if rt.size > 1 and rt.var() > 0 else None
    return {"config": dataclasses.asdict(cfg), "code_version": code_version(),
            "counts": dict(sorted(counts.items())),
            "unexplained_rt_share": {"configured": cfg.unexplained_rt_share,
                                     "realised": realised},
            "event_codes": EVENT_CODES}


def _dataset_description() -> dict[str, Any]:
    return {"Name": "Synthetic HBN contrast-change detection (overnight.synth)",
            "BIDSVersion": "1.9.0", "DatasetType": "raw", "License": "CC0",
            "GeneratedBy": [{"Name": "overnight.synth", "Version": code_version(),
                             "Description": "Simulated EEG whose CPP, beta desynchronisation "
                                            "and motor potential carry the response time"}]}


def simulated_cache_chunks(n_windows: int, *, windows_per_subject: int = 85,
                           chunk_windows: int = 4096, seed: int = 0, margin_s: float = 0.0
                           ) -> Iterator[dict[str, np.ndarray]]:
    """Window-cache chunks of simulated windows, without BIDS (for the real-size benchmark).

    Each chunk has its own subjects (about ``windows_per_subject`` windows each, as in HBN)
    and is sorted by subject, as a cache built from recordings is. Yields dicts with every
    column of the window cache (see ``overnight.windows.cache.write_cache_from_chunks``),
    the margins (``margin_s`` on each side) included when there are any.
    """
    check_int("n_windows", n_windows, minimum=1)
    check_int("chunk_windows", chunk_windows, minimum=1)
    for number, start in enumerate(range(0, n_windows, chunk_windows)):
        n = min(chunk_windows, n_windows - start)
        sim = simulate_windows(n, n_subjects=max(1, round(n / windows_per_subject)),
                               seed=seed * 100_003 + number, margin_s=margin_s)
        order = np.argsort(sim["subject"], kind="stable")
        stim_onset_s = 10.0 + 5.0 * np.arange(n)  # nominal: the windows have no recording
        margins = {f"eeg_{side}": sim[side][order] for side in ("before", "after")
                   if side in sim}
        yield {**margins,
            "eeg": sim["eeg"][order], "rt": sim["rt"][order],
            "subject": sim["subject"][order].astype(object),
            "release": sim["release"][order].astype(object),
            "run": np.ones(n, dtype=np.int16), "trial": np.arange(n, dtype=np.int32),
            "stim_onset_s": stim_onset_s, "response_onset_s": stim_onset_s + sim["rt"][order],
            "hand": sim["hand"][order].astype(object), "correct": np.ones(n, dtype=bool),
            "recording": np.full(n, number, dtype=np.int32),
        }
