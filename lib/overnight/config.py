"""Settings for every job: frozen dataclasses with defaults, units and allowed values in code.

This module owns every default and every allowed range: a section checks its values when
it is built, so no consumer repeats a default or re-checks a range. A TOML file holds only
what differs from the defaults, one table per section (``[train]``, ``[windows]``, ...);
``--set section.key=value`` overrides it on the command line. Unknown sections or keys,
values of the wrong type and values out of range are errors, and the resolved config is
saved with every output (``Config.to_dict``). Standard library only.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from overnight.layout import TRAIN_PREFIX
from overnight.units import to_samples

SYNTH_SFREQS_HZ = (100.0, 500.0)  # the challenge's L100 releases and the raw HBN rate
EEG_FORMATS = ("set", "bdf")  # EEGLAB and BioSemi, the formats HBN ships
PRECISIONS = ("auto", "fp32", "bf16")
# train.normalization's value for "each model's own" (its constructor's default)
OWN_NORMALIZATION = "auto"
# The environment variable with the search's shared storage (a PostgreSQL URL): a password
# travels in the environment, never on a command line or in a log.
SEARCH_STORAGE_ENV = "SEARCH_STORAGE"


def setting(default: Any, *, at_least: float | None = None, above: float | None = None,
            at_most: float | None = None, below: float | None = None,
            choices: Sequence[Any] | None = None) -> Any:
    """A dataclass field with its default and its allowed values (bounds are inclusive
    for ``at_least``/``at_most``, exclusive for ``above``/``below``)."""
    rules = {"at_least": at_least, "above": above, "at_most": at_most, "below": below,
             "choices": tuple(choices) if choices is not None else None}
    return field(default=default, metadata={k: v for k, v in rules.items() if v is not None})


class _Section:
    """Checks every field against its type and its declared allowed values when built."""

    name: ClassVar[str]

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            _check_value(f"[{self.name}] {spec.name}", getattr(self, spec.name), spec)
        self._check_together()

    def _check_together(self) -> None:
        """Rules that tie several settings together."""


def _check_value(where: str, value: Any, spec: dataclasses.Field) -> None:
    expected = type(spec.default)
    if type(value) is not expected:
        raise TypeError(f"{where} = {value!r}: expected {expected.__name__}")
    if isinstance(value, tuple) and not all(isinstance(item, str) for item in value):
        raise TypeError(f"{where} = {value!r}: expected a list of strings")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} = {value!r}: expected a finite number")
    rules = spec.metadata
    if "choices" in rules and value not in rules["choices"]:
        raise ValueError(f"{where} = {value!r}: expected one of {list(rules['choices'])}")
    for rule, holds, words in (("at_least", operator.ge, ">="), ("above", operator.gt, ">"),
                               ("at_most", operator.le, "<="), ("below", operator.lt, "<")):
        if rule in rules and not holds(value, rules[rule]):
            raise ValueError(f"{where} = {value!r}: expected {words} {rules[rule]}")


@dataclass(frozen=True)
class SynthConfig(_Section):
    """The synthetic HBN CCD dataset (``make synth``)."""

    name: ClassVar[str] = "synth"
    n_subjects: int = setting(30, at_least=1)  # subjects in the BIDS tree
    runs_per_subject: int = setting(3, at_least=1, at_most=3)  # CCD runs, 1..3 as in HBN
    # contrastTrial_start events per block; a run holds one block or, like some real files,
    # two. The official trial logic drops each file's last trial.
    trials_per_run: int = setting(25, at_least=1)
    # recording rate, Hz: 100 (challenge L100 releases) or 500 (raw)
    sfreq_hz: float = setting(100.0, choices=SYNTH_SFREQS_HZ)
    fmt: str = setting("set", choices=EEG_FORMATS)  # file format: EEGLAB or BDF
    # share of RT variance the decision signal (the CPP) does not carry, 0..1: the motor
    # time's variability (the motor signals follow the press itself)
    unexplained_rt_share: float = setting(0.25, at_least=0.0, at_most=1.0)
    # The harder setting (configs/synth-hard.toml) turns these: task signals (CPP, beta,
    # motor potential) times this against the same background,
    task_signal_scale: float = setting(1.0, above=0.0)
    # lognormal sd of each subject's task gain and background scale,
    subject_sd: float = setting(0.2, at_least=0.0)
    # sd of each subject's shift of the task sources on the scalp, metres (0: none),
    spatial_sd_m: float = setting(0.0, at_least=0.0)
    # and sd of each subject's shift of the CPP onset, seconds (0: none).
    latency_sd_s: float = setting(0.0, at_least=0.0)
    # Behaviour, seconds. RTs are drawn with this mean and sd (subject offsets included;
    # the realised figures also move with the early presses and the deadline),
    rt_mean_s: float = setting(1.6, above=0.0)
    rt_sd_s: float = setting(0.4, above=0.0)
    # the sd of the subjects' mean RTs, part of rt_sd_s (the real releases: about 0.2 s,
    # 23 % of the RT variance),
    subject_rt_sd_s: float = setting(0.15, at_least=0.0)
    # the share of fast guesses, pressed uniformly between early_press_min_s and the window
    # start (0.5 s: the press lies before the window; the real releases: 2.6 % below 0.5 s),
    early_press_share: float = setting(0.03, at_least=0.0, below=1.0)
    early_press_min_s: float = setting(0.3, at_least=0.0, below=0.5)
    # and the response deadline: a later press is no response, and the trial is dropped,
    # as in the real files, whose RTs end at 2.42 s.
    response_deadline_s: float = setting(3.5, above=0.5)
    seed: int = setting(0, at_least=0)  # everything is deterministic from this seed

    def _check_together(self) -> None:
        if not self.subject_rt_sd_s < self.rt_sd_s:
            raise ValueError(f"[synth] subject_rt_sd_s = {self.subject_rt_sd_s!r}, rt_sd_s = "
                             f"{self.rt_sd_s!r}: expected the subjects' part below the whole")


@dataclass(frozen=True)
class WindowsConfig(_Section):
    """Cutting recordings into Challenge 1 windows."""

    name: ClassVar[str] = "windows"
    # rate of the cache, Hz; other inputs are filtered and resampled
    sfreq_hz: float = setting(100.0, above=0.0)
    window_start_s: float = setting(0.5)  # window start after the stimulus, s (REFERENCE)
    window_stop_s: float = setting(2.5)  # window end after the stimulus, s (REFERENCE)
    # Signal kept on each side of every window, s (datasets eeg_before/eeg_after; the window
    # itself is unchanged): training draws shifted crops from it (train.crop_shift_s).
    margin_s: float = setting(0.5, at_least=0.0)
    l_freq_hz: float = setting(0.5, above=0.0)  # band-pass low edge when resampling, Hz
    # band-pass high edge when resampling, Hz (kept below Nyquist)
    h_freq_hz: float = setting(50.0, above=0.0)
    val_fraction: float = setting(0.2, above=0.0, below=1.0)  # share of subjects held out
    # Share of the remaining (training) subjects held out as the tune set: early stopping,
    # the best epoch and every choice made while training are judged on them, so the
    # validation subjects are read once per model, by compare.
    tune_fraction: float = setting(0.2, above=0.0, below=1.0)
    split_seed: int = setting(0, at_least=0)  # seed of the subject-disjoint split
    # Releases held out whole for validation, e.g. ["R5"] as the challenge's public
    # leaderboard did; empty: val_fraction of the subjects, drawn with split_seed.
    val_releases: tuple[str, ...] = setting(())
    # The official trial logic (eegdash build_trial_table) drops the last trial of a file:
    # real files have no end_experiment to close it. true keeps it, to the file's last event.
    keep_last_trial: bool = setting(False)
    # Worker processes that read, filter, resample and cut recordings; 0: one per core.
    workers: int = setting(0, at_least=0)
    # Quality control. A channel whose std over the recording is below this is flat: real
    # EEG in volts has a std of 1e-5..1e-4, so 1e-8 V (0.01 uV) is no signal at all (the
    # flat Cz reference is normal and only counted).
    flat_channel_std_v: float = setting(1e-8, above=0.0)
    # A recording with more than this share of flat channels carries no EEG (a disconnected
    # amplifier, an empty export): it is skipped.
    max_flat_share: float = setting(0.5, above=0.0, at_most=1.0)
    # A channel whose std exceeds this multiple of the median channel std is noisy: counted
    # and shown per recording, kept (the models' per-channel scaling copes with one).
    noisy_channel_ratio: float = setting(10.0, above=1.0)
    # The median |x| of a recording's non-flat channels must lie in this range for volts:
    # EEG is 1e-6..1e-4 V, so 1e-7..1e-3 V leaves a decade either side; microvolts read as
    # volts give 1..100, and millivolts 1e-3..1e-1.
    min_median_abs_v: float = setting(1e-7, above=0.0)
    max_median_abs_v: float = setting(1e-3, above=0.0)

    @property
    def n_times(self) -> int:
        """Samples per window at the cache rate (200 for 0.5..2.5 s at 100 Hz)."""
        return to_samples(self.window_stop_s - self.window_start_s, self.sfreq_hz)

    @property
    def margin_samples(self) -> int:
        """Samples kept on each side of a window at the cache rate."""
        return to_samples(self.margin_s, self.sfreq_hz)

    def _check_together(self) -> None:
        if self.n_times < 1:
            raise ValueError(f"[windows] window_start_s = {self.window_start_s!r}, "
                             f"window_stop_s = {self.window_stop_s!r}: expected stop after "
                             f"start by at least one sample at {self.sfreq_hz:g} Hz")
        if not self.l_freq_hz < self.h_freq_hz:
            raise ValueError(f"[windows] l_freq_hz = {self.l_freq_hz!r}, h_freq_hz = "
                             f"{self.h_freq_hz!r}: expected l_freq_hz < h_freq_hz")
        if not self.min_median_abs_v < self.max_median_abs_v:
            raise ValueError(f"[windows] min_median_abs_v = {self.min_median_abs_v!r}, "
                             f"max_median_abs_v = {self.max_median_abs_v!r}: expected min < max")


@dataclass(frozen=True)
class FeaturesConfig(_Section):
    """The Numba feature pass."""

    name: ClassVar[str] = "features"
    slab_windows: int = setting(2048, at_least=1)  # windows read, computed and written per slab


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Training one model (``make train-<name>``): the loop, the augmentations, ensembles."""

    name: ClassVar[str] = "train"
    batch_size: int = setting(64, at_least=1)  # windows per step
    # peak AdamW learning rate at lr_reference_batch windows per step
    lr: float = setting(1e-3, above=0.0)
    # the LR scales with batch_size / lr_reference_batch: by its square root ("sqrt", what
    # Adam tolerates best in our runs) or linearly ("linear", the rule for SGD)
    lr_reference_batch: int = setting(64, at_least=1)
    lr_scaling: str = setting("sqrt", choices=("sqrt", "linear"))
    weight_decay: float = setting(1e-4, at_least=0.0)  # AdamW weight decay
    dropout: float = setting(0.3, at_least=0.0, below=1.0)  # dropout probability
    n_filters: int = setting(32, at_least=1)  # channels of the temporal convolutions
    # The raw-window network of baseline and hybrid (overnight.models.BACKBONES): "conv"
    # (a spatial filter bank, then temporal convolutions) or "eegnet" (EEGNet's layout:
    # temporal filters, a few spatial filters each, separable convolutions; few weights).
    backbone: str = setting("conv", choices=("conv", "eegnet"))
    # Input scaling (overnight.models.NORMALIZATIONS): "train" uses the training split's
    # channel statistics; "window" z-scores each channel of each window (the challenge's top
    # entries did; scale-free, blind to each window's offsets and slow drifts); "gain"
    # removes each window's channel offsets and its overall gain, keeping the channels'
    # relative amplitudes; "auto" is each model's own: "window" for the press locators and
    # the timing network, "train" for the CNN and the hybrid. Neither wins everywhere
    # (docs/BENCHMARKS.md, "Models"), so the night trains both kinds and the blend weighs
    # them: within 0.002 of the old recipe's blend on the project's generator, 0.01-0.24
    # better on othergen's physiologies; with every network on "window" it lost 0.05-0.10
    # on the project's generator.
    normalization: str = setting(OWN_NORMALIZATION, choices=(OWN_NORMALIZATION, "train",
                                                            "window", "gain"))
    # Drop the recording reference (Cz, E129) from what the networks read: it is flat where
    # the recording kept it as recorded, and noise once re-referenced; three of the
    # challenge's top four entries dropped it.
    drop_reference: bool = setting(True)
    # Dense time targets for the models that locate the press (press, press-hybrid, timing):
    # beside the squared RT error, dense_weight x the cross-entropy between the softmax over the
    # window's steps and a Gaussian label of press_label_sd_s at the press, so every step
    # learns whether the press is there (the squared error of the expected time alone
    # sends a weak, flat gradient while the scores are flat, where training starts). A
    # press outside the window (2.6 % of real RTs are below 0.5 s, none after 2.42 s) is
    # labelled at its nearest step, where the clamp to the training RTs keeps its answer
    # anyway. 0: off; 1, with per-window scaling, as measured (docs/BENCHMARKS.md, "Models").
    dense_weight: float = setting(1.0, at_least=0.0)
    press_label_sd_s: float = setting(0.05, above=0.0)
    # Augmentation, on training batches only (the tune side and every prediction see the
    # plain window); the defaults are what make bench-models supported on every dataset
    # (docs/BENCHMARKS.md, "Models"). Shifted crops: each window is cut up to this many
    # seconds earlier or later from the cache's margin (windows.margin_s, at least this),
    # its target moved by the same shift (RT - shift), so the press appears at many places;
    # 0: off.
    crop_shift_s: float = setting(0.25, at_least=0.0)
    scale_sd: float = setting(0.3, at_least=0.0)  # each window x exp(N(0, sd)): a gain
    # each channel x exp(N(0, sd)): an electrode's gain
    channel_scale_sd: float = setting(0.2, at_least=0.0)
    # The net as if rotated on the head by up to this many degrees (about any axis through
    # its centre), the field re-read at the rotated electrodes; 0: off.
    sensor_rotation_deg: float = setting(20.0, at_least=0.0, at_most=90.0)
    # probability that a channel is replaced by its training mean (no signal)
    channel_dropout: float = setting(0.0, at_least=0.0, below=1.0)
    noise_sd: float = setting(0.0, at_least=0.0)  # Gaussian noise, in training stds per channel
    # mixup: each window (and target) mixed with another of the batch, weight Beta(a, a); 0: off
    mixup_alpha: float = setting(0.0, at_least=0.0)
    # true: every training subject is drawn equally often (with replacement); false: every
    # window once per epoch
    balanced_subjects: bool = setting(False)
    # The weights scored and saved: an exponential moving average of the trained ones over
    # about this many epochs (its time constant, so that it means the same on any data
    # size); 0: the trained weights.
    ema_epochs: float = setting(1.0, at_least=0.0)
    grad_clip: float = setting(1.0, above=0.0)  # max global gradient norm
    max_epochs: int = setting(40, at_least=1)  # upper bound on epochs
    warmup_epochs: int = setting(1, at_least=0)  # linear warm-up before the cosine decay
    # early stopping: epochs without a better tune NRMSE
    patience: int = setting(8, at_least=1)
    min_delta: float = setting(1e-4, at_least=0.0)  # NRMSE improvement that resets patience
    seed: int = setting(0, at_least=0)  # model init and batch order
    # true: once the tune subjects chose the epoch, train again on the training and the
    # tune subjects for that many epochs and ship that (its tune score is the first run's)
    refit: bool = setting(False)
    # Seeds per model (seed, seed + 1, ...): more than 1 trains that many and ships their
    # mean as one model, in one weights file (the challenge's top entries were ensembles;
    # on the benchmark, 3 seeds beat one and vary less from seed to seed). That many times
    # the training time: the demo and the CPU benchmarks train one.
    ensemble: int = setting(3, at_least=1)
    device: str = setting("auto")  # "auto" (GPU when available), "cpu", "cuda", "cuda:1", ...
    # "auto" (bf16 autocast on GPUs that support it), "fp32", "bf16"
    precision: str = setting("auto", choices=PRECISIONS)
    # windows per forward pass, evaluating (and in compare): on a CPU, 256 keeps a batch's
    # activations in the caches, 1.5-2x quicker per window than 1024 (docs/BENCHMARKS.md,
    # "Compare at real size"); a GPU config may raise it (configs/bench-gpu.toml)
    eval_batch_size: int = setting(256, at_least=1)
    # CPU training keeps up to this many GB of windows in memory; more is streamed from
    # HDF5 in slabs. On a GPU the windows are loaded onto the device when they fit in 60 %
    # of its free memory, else streamed the same way.
    host_cache_gb: float = setting(2.0, at_least=0.0)
    slab_windows: int = setting(2048, at_least=1)  # windows per contiguous HDF5 read


@dataclass(frozen=True)
class GBMConfig(_Section):
    """Gradient-boosted trees on the window features (``--model gbm``): scikit-learn's
    HistGradientBoostingRegressor, stopped on the tune subjects."""

    name: ClassVar[str] = "gbm"
    learning_rate: float = setting(0.05, above=0.0, at_most=1.0)  # shrinkage per tree
    max_iter: int = setting(2000, at_least=1)  # upper bound on trees
    # Small trees with large leaves: a leaf must stand for many windows (and so subjects),
    # not for one subject's quirks.
    max_leaf_nodes: int = setting(15, at_least=2)
    min_samples_leaf: int = setting(40, at_least=1)
    l2_regularization: float = setting(1.0, at_least=0.0)
    # early stopping: trees without a better tune loss (squared error) before it stops
    n_iter_no_change: int = setting(50, at_least=1)


@dataclass(frozen=True)
class CompareConfig(_Section):
    """The champion gate."""

    name: ClassVar[str] = "compare"
    # relative NRMSE improvement a challenger needs, 0.01 = 1 %
    margin: float = setting(0.01, at_least=0.0)
    # Resamples of the subject bootstrap behind every interval and the paired test: 1000
    # puts the 5 % and 95 % points within about a percent of their limit, in well under a
    # second for thousands of windows.
    bootstrap_resamples: int = setting(1000, at_least=100)
    bootstrap_seed: int = setting(0, at_least=0)  # the same resamples every night
    # Width of the interval shown with every NRMSE.
    interval_level: float = setting(0.9, above=0.0, below=1.0)
    # Share of paired resamples in which a challenger must beat the champion to be
    # promoted: with a handful of validation subjects, a 1 % gain is often noise.
    min_paired_wins: float = setting(0.9, at_least=0.5, at_most=1.0)
    # Shuffles of each feature family behind its permutation importance (each a pass of the
    # model over the validation windows).
    importance_repeats: int = setting(3, at_least=1)
    # Fit a blend of the night's models (non-negative weights summing to one, on the tune
    # subjects' predictions) and compare it as one more model: every top entry of the
    # challenge shipped an ensemble.
    blend: bool = setting(True)
    # A model slower than this, one window at a time on the CPU (the scorer's loop, the
    # slower of one thread and torch's default threads), is not promoted: no time limit
    # is published and the scorer may run on a CPU; at 20 ms a release's 41,071 windows
    # take 14 minutes. The night's shipped models take 1-8 ms (docs/BENCHMARKS.md). 0: no
    # limit (the preflight's: one-epoch models timed beside other work say nothing of it).
    max_ms_per_window: float = setting(20.0, at_least=0.0)

    @property
    def speed_limit_ms(self) -> float | None:
        """``max_ms_per_window``, or None when it is 0 (no limit)."""
        return self.max_ms_per_window or None


@dataclass(frozen=True)
class NightConfig(_Section):
    """The night: which models it trains, and its time limits.

    A stage that hangs is stopped and the night goes on without it, and the report comes
    before the morning whatever happens. Each limit is far above what the stage takes at
    real size (docs/BENCHMARKS.md), so only a hang or a machine gone wrong meets it, yet
    short enough to leave the rest of the night to the other stages."""

    name: ClassVar[str] = "night"
    # The models the night trains, by name (overnight.models.catalog lists the registered
    # ones; make train-<name> trains any of them); empty: every registered model.
    models: tuple[str, ...] = setting(())
    # Model files of your own, outside lib/, relative to the checkout: a .py file, or a
    # folder whose .py files are read. Each registers its models as the built-in ones do
    # (docs/models.md); they then train, are compared and ship like the built-in ones.
    extra_models: tuple[str, ...] = setting(())
    # Cron starts at 21:30: nine hours end the night by 06:30, report included.
    night_limit_h: float = setting(9.0, above=0.0)
    # One epoch per model on a 3-subject slice: a minute or two, even on a CPU.
    preflight_limit_min: float = setting(30.0, above=0.0)
    # Every release at 500 Hz (about 3,000 recordings) takes minutes on 8 workers; two
    # hours also cover a slow network mount.
    windows_limit_min: float = setting(120.0, above=0.0)
    # 41,071 windows take seconds with Numba (the old pass took 99 minutes).
    features_limit_min: float = setting(60.0, above=0.0)
    # Per model: the night's settings take minutes on a GPU and under an hour on 16 cores.
    train_limit_min: float = setting(120.0, above=0.0)
    # The search stops itself at its budget or at the night's limit less [search]
    # reserve_min, then lets its workers stop for [search] stop_grace_min: this limit only
    # catches a search that hangs. Its budget's cap (8 h) plus a margin; the night's limit
    # cuts it further, as it cuts every stage.
    search_limit_min: float = setting(500.0, above=0.0)
    # Scoring, the bootstrap and the fresh-process check: a minute.
    compare_limit_min: float = setting(30.0, above=0.0)
    # Reads what the night wrote and renders one page: seconds.
    report_limit_min: float = setting(10.0, above=0.0)
    # Any other stage (synth, device, rollback, verify).
    other_limit_min: float = setting(60.0, above=0.0)
    # After SIGTERM, a stopped stage's processes get this long to end before SIGKILL.
    kill_grace_s: float = setting(30.0, at_least=0.0)

    def limit_setting(self, stage: str) -> str:
        """The name of the setting that limits ``stage`` (``train-*`` share one)."""
        kind = "train" if stage.startswith(TRAIN_PREFIX) else stage
        name = f"{kind}_limit_min"
        return name if name in {f.name for f in dataclasses.fields(self)} else "other_limit_min"


@dataclass(frozen=True)
class SearchConfig(_Section):
    """The hyperparameter search (stage search, ``overnight.search``): an Optuna study of
    the ``[train]`` settings, judged on the tune subjects, in the hours the chain leaves
    free. What it searches, with each range and why, is ``overnight.search.space``."""

    name: ClassVar[str] = "search"
    # Minutes the search may run, at most: 8 h fill a night on a GPU host, where the whole
    # chain takes minutes. It also ends at the night's limit less reserve_min, whichever
    # comes first. 0 turns it off.
    budget_min: float = setting(480.0, at_least=0.0)
    # A CPU trains one trial in about a minute on the demo data and in hours at real size:
    # there the search runs only when asked (true; make ... SEARCH_MIN=5 asks).
    on_cpu: bool = setting(False)
    # Minutes of the night kept after the search for compare and the report (each takes
    # minutes at R1-R11 on 2 cores, docs/SCALING.md), with room for a late last epoch.
    reserve_min: float = setting(30.0, at_least=0.0)
    # At its end the search stops each trial after its running epoch; a worker still busy
    # this long after is killed (its trial is retried next time, from its checkpoint).
    stop_grace_min: float = setting(5.0, at_least=0.0)
    # Finished trials (complete or pruned) after which the search stops; 0: only time
    # stops it. For tests and short demos.
    max_trials: int = setting(0, at_least=0)
    # Epochs a trial trains at most; 0: the night's [train] max_epochs. A trial compares
    # settings: where epochs are slow (a CPU) fewer of them buy more trials, and the search
    # model is then the best trial as it trained.
    max_epochs: int = setting(0, at_least=0)
    # Trials drawn at random before TPE models the results: Optuna's default (10); fewer
    # lets TPE guess from too little, more spends the short nights on random draws.
    startup_trials: int = setting(10, at_least=1)
    # The median pruner stops a trial whose tune NRMSE after an epoch is worse than the
    # median of the earlier trials at that epoch, once pruner_startup_trials have finished
    # and after pruner_warmup_epochs (the first epochs of every trial, under LR warm-up,
    # say little of where it ends).
    pruner_startup_trials: int = setting(5, at_least=0)
    pruner_warmup_epochs: int = setting(2, at_least=0)
    # With SEARCH_STORAGE (PostgreSQL, several hosts): a worker records a heartbeat this
    # often, and a running trial silent for twice as long is failed and retried (its worker
    # died). Optuna's RDB heartbeat; seconds.
    heartbeat_s: int = setting(60, at_least=1)
    seed: int = setting(0, at_least=0)  # the sampler's seed (each worker adds its own offset)


@dataclass(frozen=True)
class DataConfig(_Section):
    """Fetching the releases from their bucket (``make data``): how, not what."""

    name: ClassVar[str] = "data"
    # Files fetched at once: one S3 connection gives tens of MB/s, so 16 fill a 1 Gb/s
    # link (eegdash's downloads were slow until it raised its concurrency, its PR #304).
    workers: int = setting(16, at_least=1)
    # Seconds to open a connection (S3 takes well under one): an unreachable bucket fails
    # in seconds, not minutes.
    connect_timeout_s: float = setting(3.0, above=0.0)
    # Seconds a connection may stay silent before the request is tried again.
    read_timeout_s: float = setting(60.0, above=0.0)
    # The first listing request is the probe: a bucket that cannot be reached, or a mirror
    # that does not answer, is reported before anything else happens, within seconds (twice
    # 5 s here). S3 answers it in well under a second.
    probe_read_timeout_s: float = setting(5.0, above=0.0)
    probe_attempts: int = setting(2, at_least=1)
    # Attempts of every other request (botocore's standard retries: exponential backoff
    # with jitter, on connection errors, throttling and 5xx answers).
    request_attempts: int = setting(5, at_least=1)
    # Attempts of a whole file whose stream broke or whose bytes did not match the
    # listing (botocore does not retry a stream cut mid-way), waiting retry_wait_s, then
    # twice that, and so on, in between.
    file_attempts: int = setting(4, at_least=1)
    retry_wait_s: float = setting(1.0, at_least=0.0)


SECTIONS = (SynthConfig, WindowsConfig, FeaturesConfig, TrainConfig, GBMConfig, CompareConfig,
            NightConfig, SearchConfig, DataConfig)


@dataclass(frozen=True)
class Config:
    """Every job's settings; each job reads its own section."""

    synth: SynthConfig = field(default_factory=SynthConfig)
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    gbm: GBMConfig = field(default_factory=GBMConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    night: NightConfig = field(default_factory=NightConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The resolved config, to store beside an output."""
        return dataclasses.asdict(self)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the TOML file at ``path``, then ``section.key=value`` overrides.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        An unknown section or key, a malformed override, or a value out of range.
    TypeError
        A value of the wrong type.
    """
    tomllib = _toml()
    tables: dict[str, dict[str, Any]] = {}
    if path is not None:
        with open(path, "rb") as fh:
            tables = tomllib.load(fh)
    for item in overrides or []:
        section, key, value = _parse_override(item)
        tables.setdefault(section, {})[key] = value
    source = str(path) if path else "defaults"
    try:
        return _build(tables, source)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{source}: {exc}") from None


def _toml() -> Any:
    """The TOML reader, imported when a file or an override is read: the host side imports
    this module for the defaults alone, on a Python 3.10 that may lack tomli."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python 3.10 only
        import tomli as tomllib
    return tomllib


def _parse_override(item: str) -> tuple[str, str, Any]:
    name, sep, raw = item.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not key:
        raise ValueError(f"override {item!r}: expected section.key=value, e.g. train.max_epochs=5")
    tomllib = _toml()
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word is a string: train.device=cpu
    return section, key, value


def _build(tables: dict[str, Any], source: str) -> Config:
    sections = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(tables) - set(sections))
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; allowed: {sorted(sections)}")
    built = {}
    for name, table in tables.items():
        section_type = sections[name].default_factory  # type: ignore[misc]
        built[name] = _build_section(section_type, table, name)
    return Config(**built)


def _build_section(section_type: Any, table: Any, name: str) -> Any:
    if not isinstance(table, dict):
        raise TypeError(f"[{name}]: expected a table of settings, got {table!r}")
    fields = {f.name: f for f in dataclasses.fields(section_type)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ValueError(f"[{name}] unknown key(s) {unknown}; allowed: {sorted(fields)}")
    values = {}
    for key, value in table.items():
        if type(fields[key].default) is float and type(value) is int:
            value = float(value)  # TOML's 1 for 1.0
        if type(fields[key].default) is tuple and type(value) is list:
            value = tuple(value)  # TOML's array; the frozen config keeps a tuple
        values[key] = value
    return section_type(**values)
