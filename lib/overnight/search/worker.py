"""One search worker: trials of the study, one after another, until the search's end.

A trial trains one model as every night does (``overnight.training.fit.train_model``) with the
night's ``[train]`` settings and the trial's values in place of the searched ones
(``overnight.search.space``). Its objective is the best tune NRMSE: the validation subjects
are never read. After every epoch the tune NRMSE goes to Optuna's pruner, which may stop
the trial; and when the search's time is up, the trial stops after its epoch and is
requeued, to resume from its checkpoint the next time the study runs.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from overnight.config import Config, TrainConfig
from overnight.search import space
from overnight.search.study import (
    StudyPlace,
    fail_and_requeue,
    open_study,
    origin,
    worker_lock,
    worker_name,
)
from overnight.training.device import resolve_device
from overnight.training.fit import train_model
from overnight.windows.cache import open_cache

log = logging.getLogger(__name__)

# A worker whose trials fail this many times in a row stops with the last error: a setting
# that breaks every trial (a bug, a full disk) must fail the stage, not fill the night.
MAX_FAILURES_IN_A_ROW = 3


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What every trial reads: the window cache, the split and the feature cache."""

    windows: Path
    split: Path
    features: Path | None = None


class SearchTimeUp(BaseException):
    """The search's time ran out during a trial, after an epoch and its checkpoint.

    A BaseException: Optuna's ``optimize`` lets it through without finishing the trial,
    so the worker can fail it and requeue its values in one place.
    """

    def __init__(self, number: int, epoch: int) -> None:
        super().__init__(f"trial {number}: the search's time is up after epoch {epoch}")
        self.number, self.epoch = number, epoch


@dataclasses.dataclass
class Objective:
    """Train one trial's model; return its best tune NRMSE."""

    inputs: Inputs
    place: StudyPlace
    train: TrainConfig  # the night's [train]: what the trial does not search
    margin_s: float  # the window cache's margin: the most a crop may shift
    end: float  # epoch seconds: the trial stops after the epoch that passes it
    families: tuple[str, ...]  # the models a trial may train (space.families)
    extra_models: tuple[str, ...] = ()  # [night] extra_models: where the user's live

    def __call__(self, trial: optuna.trial.Trial) -> float:
        trial.set_user_attr("worker", worker_name())
        try:
            return self._train(trial, _trial(trial.study, trial.number))
        except (optuna.TrialPruned, SearchTimeUp):
            raise
        except Exception as exc:  # recorded on the trial, then Optuna fails it
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            raise

    def _train(self, trial: optuna.trial.Trial, frozen: FrozenTrial) -> float:
        values = space.suggest(trial, self.margin_s, self.families)
        family, cfg = space.trial_settings(self.train, values)
        folder = self.place.trial_dir(origin(frozen))
        log.info("trial %d%s: %s in %s", trial.number,
                 f" (retry of {origin(frozen)})" if origin(frozen) != trial.number else "",
                 ", ".join(f"{k}={_short(v)}" for k, v in values.items()), folder)
        meta = train_model(family, self.inputs.windows, self.inputs.split, folder, cfg,
                           self.inputs.features, on_epoch=self._reporter(trial, frozen),
                           extra_models=self.extra_models)
        trial.set_user_attr("epochs_run", meta["epochs_run"])
        trial.set_user_attr("train_seconds", meta["train_seconds"])
        return float(meta["best_tune_nrmse"])

    def _reporter(self, trial: optuna.trial.Trial,
                  frozen: FrozenTrial) -> Callable[[int, float], None]:
        """The per-epoch hook: report to the pruner (each epoch once: the members of an
        ensemble and a resumed retry repeat epochs), prune, stop at the search's end."""
        last = [max(frozen.intermediate_values, default=0)]

        def on_epoch(epoch: int, tune_nrmse: float) -> None:
            if epoch > last[0] and math.isfinite(tune_nrmse):
                last[0] = epoch
                trial.report(tune_nrmse, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"tune NRMSE {tune_nrmse:.4f} at epoch {epoch}")
            if time.time() >= self.end:
                raise SearchTimeUp(trial.number, epoch)

        return on_epoch


def run_worker(inputs: Inputs, place: StudyPlace, config: Config, end: float, since: float,
               index: int = 0, n_workers: int = 1,
               progress: Callable[[optuna.Study], None] | None = None) -> int:
    """Run trials of the study until ``end`` (epoch seconds), or until ``[search]
    max_trials`` trials finished since ``since`` (all workers' together); return how many
    this worker finished.

    Parameters
    ----------
    inputs : Inputs
        The caches and the split.
    place : StudyPlace
        The study.
    config : Config
        The night's settings: ``[train]`` for what is not searched, ``[search]``.
    end, since : float
        Epoch seconds: when to stop, and when the search stage started.
    index, n_workers : int
        This worker's index among the stage's workers, and their number (CPU threads are
        shared among them; each draws its own random values).
    progress : callable, optional
        Called with the study after every trial (``make status``'s record).

    Raises
    ------
    RuntimeError
        ``MAX_FAILURES_IN_A_ROW`` trials failed one after the other.
    """
    if time.time() >= end:
        return 0
    if resolve_device(config.train.device).type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // n_workers))
    with open_cache(inputs.windows) as cache:
        margin_s = cache.margin_samples / cache.sfreq_hz
    seed = int(np.random.SeedSequence([config.search.seed, index, int(since)])
               .generate_state(1)[0])
    objective = Objective(inputs, place, space.trial_base(config), margin_s, end,
                          space.families(config), config.night.extra_models)
    rules = _Rules(config, place, end, since, progress)
    with worker_lock(place):
        study = open_study(place, config.search, seed)
        try:
            study.optimize(objective, callbacks=[rules], catch=(Exception,),
                           gc_after_trial=True)
        except SearchTimeUp as up:
            fail_and_requeue(study, up.number, f"the search's time was up after epoch "
                             f"{up.epoch}: it resumes from its checkpoint")
            log.info("%s; requeued", up)
        if progress is not None:
            progress(study)
    if rules.failures >= MAX_FAILURES_IN_A_ROW:
        raise RuntimeError(f"{rules.failures} trials failed in a row; the last: "
                           f"{rules.last_error}")
    return rules.finished


class _Rules:
    """After every trial: tidy its folder, count, report progress, and stop the worker when
    the time is up, enough trials finished, or trials keep failing."""

    def __init__(self, config: Config, place: StudyPlace, end: float, since: float,
                 progress: Callable[[optuna.Study], None] | None) -> None:
        self.place, self.end, self.since, self.progress = place, end, since, progress
        self.max_trials = config.search.max_trials
        self.finished = self.failures = 0
        self.last_error: str | None = None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            self.finished += 1
            self.failures = 0
        elif trial.state == TrialState.FAIL:
            self.failures += 1
            self.last_error = trial.user_attrs.get("error", "no error recorded")
        self._tidy(study, trial)
        if self.progress is not None:
            self.progress(study)
        if time.time() >= self.end:
            log.info("the search's time is up: no new trial")
            study.stop()
        elif self.max_trials and finished_since(study, self.since) >= self.max_trials:
            log.info("%d trials finished since the search started ([search] max_trials)",
                     self.max_trials)
            study.stop()
        elif self.failures >= MAX_FAILURES_IN_A_ROW:
            study.stop()

    def _tidy(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Keep the weights of the best trial only: a finished trial needs no checkpoint,
        and one that is not the best (or was pruned, or failed) needs no weights."""
        best = best_trial(study)
        keep_model = best is not None and best.number == trial.number
        for path in self.place.trial_dir(origin(trial)).rglob("*.pt"):
            if path.name == "checkpoint.pt" or not keep_model:
                path.unlink(missing_ok=True)
        if keep_model:  # the best it replaced keeps no weights either
            for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                if origin(other) != origin(trial):
                    for path in self.place.trial_dir(origin(other)).rglob("model.pt"):
                        path.unlink(missing_ok=True)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The complete trial with the lowest tune NRMSE, or None."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda t: t.value, default=None)


def finished_since(study: optuna.Study, since: float) -> int:
    """Trials that completed or were pruned at or after ``since`` (epoch seconds)."""
    return sum(1 for t in study.get_trials(deepcopy=False,
                                           states=(TrialState.COMPLETE, TrialState.PRUNED))
               if t.datetime_complete is not None
               and t.datetime_complete.timestamp() >= since)


def _trial(study: optuna.Study, number: int) -> FrozenTrial:
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
