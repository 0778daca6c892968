"""Stage search: the study's workers until the search's end, then its best trial as the
night's ``search`` model.

``run_search`` decides whether the search runs tonight and until when (``[search]
budget_min``, the night's deadline less ``reserve_min``), opens the study named by the
data (``overnight.search.study``), fails and requeues the trials of workers that died,
starts one worker process per GPU (one without ``GPUS``), stops the ones still busy
``stop_grace_min`` after the end, and then copies the best trial's model folder into
``models/search``: compare scores it once on the validation subjects and the gate treats
it like any model. ``summary.json`` (the report's input) and ``progress.json`` (``make
status``'s) in the night's ``search/`` folder say what happened.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from overnight import atomic
from overnight.config import Config
from overnight.night.runner import GPU_PIN_VARIABLES
from overnight.provenance import code_version
from overnight.search import space
from overnight.search.study import (
    StudyPlace,
    night_study_name,
    no_worker_running,
    open_study,
    origin,
    reap_dead_trials,
    repair_journal,
    retried_trials,
)
from overnight.search.worker import Inputs, best_trial
from overnight.training.device import resolve_device
from overnight.training.fit import train_model

log = logging.getLogger(__name__)

MODEL_NAME = "search"  # the model row, and its folder in models/
_KILL_WAIT_S = 10.0  # after SIGTERM, a worker's time to exit before SIGKILL
_POLL_S = 1.0


def off_reason(config: Config) -> str | None:
    """Why the search does not run tonight, or None when it does."""
    if config.search.budget_min == 0:
        return "off: [search] budget_min = 0"
    if resolve_device(config.train.device).type == "cpu" and not config.search.on_cpu:
        return ("off: training runs on the CPU here ([search] on_cpu = false); "
                "SEARCH_MIN=<minutes> asks for a search on this machine")
    return None


def search_end(config: Config, started: float, deadline: float | None) -> float:
    """When the search stops starting and running trials: its budget, or the night's
    deadline less the reserve for compare and the report, whichever comes first."""
    end = started + config.search.budget_min * 60.0
    if deadline is not None:
        end = min(end, deadline - config.search.reserve_min * 60.0)
    return end


def run_search(inputs: Inputs, model_dir: Path, records_dir: Path, studies_dir: Path,
               config: Config, worker_command: Sequence[str], deadline: float | None = None,
               gpus: Sequence[str] = (), storage: str | None = None,
               workers_only: bool = False) -> dict[str, Any]:
    """Run the stage; return its summary (also written to ``records_dir/summary.json``).

    Parameters
    ----------
    inputs : Inputs
        The window cache, the split and the feature cache of the night.
    model_dir : Path
        Where the best trial's model goes (``models/search``).
    records_dir : Path
        The night's ``search/`` folder: ``summary.json``, ``progress.json``.
    studies_dir : Path
        ``SEARCH_DIR``: one folder per study, beside the night folders.
    config : Config
        The night's settings.
    worker_command : sequence of str
        The command that runs one worker (the job's ``worker`` mode); the stage adds the
        worker's index, the number of workers and the times.
    deadline : float, optional
        The night's deadline, epoch seconds (``NIGHT_DEADLINE``).
    gpus : sequence of str, optional
        One worker per GPU, each pinned to its own; none: one worker.
    storage : str, optional
        A PostgreSQL URL (``SEARCH_STORAGE``) for a study shared by several hosts.
    workers_only : bool, optional
        Only this host's workers (``make search-workers``: more hosts for the night's
        study): no model, no summary; the night's own stage makes them.

    Returns
    -------
    dict
        What ``summary.json`` holds; ``worker_errors`` lists workers that failed.
    """
    started = time.time()
    off = off_reason(config)
    if off is not None:
        log.info("search %s", off)
        summary = {"off": off, "created": _now(), "worker_errors": []}
        return summary if workers_only else _write_summary(records_dir, summary)
    end = search_end(config, started, deadline)
    name, fingerprint = night_study_name(inputs.windows, inputs.split, config)
    place = StudyPlace(name, studies_dir / name, storage)
    log.info("study %s (%s), %d training and tune windows; search until %s", place.name,
             place.storage_text(), fingerprint["n_windows"], _clock(end))
    with no_worker_running(place) as alone:
        if alone:
            repair_journal(place)
    study = open_study(place, config.search, seed=config.search.seed)
    if "data" not in study.user_attrs:
        study.set_user_attr("data", fingerprint)
    reaped = reap_dead_trials(study, place, "its worker was gone when the search started "
                                            "(killed, or the machine stopped)")
    progress = progress_writer(records_dir / "progress.json", place, end, started)
    progress(study)
    errors: list[str] = []
    if end - time.time() > 0:
        errors = _run_workers(worker_command, gpus, end, started,
                              end + config.search.stop_grace_min * 60.0)
        reaped += reap_dead_trials(study, place, "its worker was stopped "
                                                 f"{config.search.stop_grace_min:g} min "
                                                 "after the search's end")
    else:
        log.info("no time left tonight (the night ends at %s, less [search] reserve_min = "
                 "%g min): the study's best so far becomes the search model",
                 _clock(deadline or end), config.search.reserve_min)
    progress(study)
    if workers_only:
        return {"study": place.name, "reaped": reaped, "worker_errors": errors}
    model = materialize(study, place, inputs, config, model_dir, records_dir)
    summary = build_summary(study, place, config, started, end, reaped, model, errors)
    return _write_summary(records_dir, summary)


def _run_workers(command: Sequence[str], gpus: Sequence[str], end: float, since: float,
                 hard_stop: float) -> list[str]:
    """Start one worker per GPU (one without GPUs), copy their output with a prefix, stop
    the ones still running at ``hard_stop``; return the failed workers' last lines."""
    n = max(1, len(gpus))
    workers: list[tuple[str, subprocess.Popen[str], list[str]]] = []
    for index in range(n):
        env = dict(os.environ)
        name = f"worker {index}"
        if gpus:
            env.update(dict.fromkeys(GPU_PIN_VARIABLES, gpus[index]))
            name += f" (GPU {gpus[index]})"
        proc = subprocess.Popen([*command, "--worker-index", str(index), "--workers", str(n),
                                 "--end", f"{end:.3f}", "--since", f"{since:.3f}"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, errors="replace", env=env)
        tail: list[str] = []
        threading.Thread(target=_copy_output, args=(proc, name, tail), daemon=True).start()
        workers.append((name, proc, tail))
    while any(p.poll() is None for _, p, _ in workers) and time.time() < hard_stop:
        time.sleep(_POLL_S)
    stopped = _stop([p for _, p, _ in workers])
    errors = []
    for name, proc, tail in workers:
        code = proc.wait()
        if code != 0 and proc.pid not in stopped:
            errors.append(f"{name} failed (exit {code}): {tail[-1] if tail else 'no output'}")
    return errors


def _copy_output(proc: subprocess.Popen[str], name: str, tail: list[str]) -> None:
    assert proc.stdout is not None  # stdout=PIPE
    for line in proc.stdout:
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()
        tail[:] = [*tail[-19:], line.rstrip()]


def _stop(procs: list[subprocess.Popen[str]]) -> set[int]:
    """SIGTERM the workers still running, SIGKILL those alive after ``_KILL_WAIT_S``;
    return their pids."""
    running = [p for p in procs if p.poll() is None]
    for proc in running:
        log.warning("worker pid %d still running past the search's end: stopping it",
                    proc.pid)
        proc.send_signal(signal.SIGTERM)
    deadline = time.time() + _KILL_WAIT_S
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
    return {p.pid for p in running}


def materialize(study: optuna.Study, place: StudyPlace, inputs: Inputs, config: Config,
                model_dir: Path, records_dir: Path) -> dict[str, Any]:
    """Put the study's best trial in ``model_dir`` as a model like any other: its folder
    copied (without checkpoints), or, when its weights are not on this host, trained again
    with its values. ``model.json`` gains a ``search`` record. Returns what was done."""
    best = best_trial(study)
    if best is None:
        return {"trial": None, "why": "no trial has finished yet"}
    record = {"study": place.name, "trial": best.number, "tune_nrmse": best.value,
              "params": best.params, "storage": place.storage_text()}
    current = _read_json(model_dir / "model.json")
    if current and (current.get("search") or {}).get("trial") == best.number \
            and current["search"].get("study") == place.name:
        return {**record, "how": "unchanged since the last run"}
    source = place.trial_dir(origin(best))
    staging = records_dir / f".model-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    if (source / "model.json").is_file() and (source / "model.pt").is_file():
        shutil.copytree(source, staging, ignore=shutil.ignore_patterns("checkpoint.pt"))
        how = f"copied from {source}"
    else:  # trained on another host (a shared study): the weights are there, not here
        family, cfg = space.trial_settings(space.trial_base(config), best.params)
        train_model(family, inputs.windows, inputs.split, staging, cfg, inputs.features,
                    extra_models=config.night.extra_models)
        how = f"trained again here ({source} holds no weights)"
    meta = json.loads((staging / "model.json").read_text())
    meta["search"] = {**record, "how": how, "code_version": code_version()}
    atomic.write_json(staging / "model.json", meta)
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, model_dir)
    log.info("search model: trial %d (tune NRMSE %.4f), %s -> %s", best.number, best.value,
             how, model_dir)
    return {**record, "how": how}


def build_summary(study: optuna.Study, place: StudyPlace, config: Config, started: float,
                  end: float, reaped: list[int], model: dict[str, Any],
                  errors: list[str]) -> dict[str, Any]:
    """Everything the report shows of the search (JSON-ready)."""
    trials = study.get_trials(deepcopy=False)
    retried = retried_trials(trials)
    best = best_trial(study)
    return {
        "off": None, "created": _now(), "study": place.name, "storage": place.storage_text(),
        "data": study.user_attrs.get("data"), "started": _iso(started), "end": _iso(end),
        "ended": _now(), "budget_min": config.search.budget_min,
        "counts": counts(trials, retried), "reaped": reaped, "worker_errors": errors,
        "best": None if best is None else {
            "number": best.number, "tune_nrmse": best.value, "params": best.params,
            "night": {k: v for k, v in space.night_values(config.train).items()
                      if k in best.params}},
        "importances": _importances(study),
        "space": space.space_table(space.families(config)),
        "trials": [_trial_row(t, retried, started) for t in trials],
        "model": model, "code_version": code_version(),
    }


def counts(trials: list[FrozenTrial], retried: dict[int, str]) -> dict[str, int]:
    """Trials finished (complete), pruned, failed (an error), interrupted (killed or
    stopped at an end, and requeued), running and waiting (requeued, not started)."""
    out = dict.fromkeys(("complete", "pruned", "failed", "interrupted", "running",
                         "waiting"), 0)
    for t in trials:
        if t.state == TrialState.FAIL:
            out["interrupted" if t.number in retried else "failed"] += 1
        elif t.state.name.lower() in out:
            out[t.state.name.lower()] += 1
    return out


def progress_writer(path: Path, place: StudyPlace, end: float,
                    since: float) -> Callable[[optuna.Study], None]:
    """A function that writes ``make status``'s record of the study (atomically)."""
    def write(study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False)
        best = best_trial(study)
        atomic.write_json(path, {
            "study": place.name, "storage": place.storage_text(), "end": end,
            "end_text": _iso(end), "since": since, "updated": _now(),
            "counts": counts(trials, retried_trials(trials)),
            "tonight": sum(1 for t in trials if t.datetime_complete is not None
                           and t.datetime_complete.timestamp() >= since),
            "best": None if best is None else {"number": best.number, "tune_nrmse": best.value},
        })
    return write


def _importances(study: optuna.Study) -> dict[str, Any]:
    """Optuna's parameter importances (PED-ANOVA, its default), or why there are none."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return {"note": f"{len(complete)} complete trial(s): importances need at least two",
                "values": {}}
    try:
        values = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as exc:
        return {"note": f"not computed: {exc}", "values": {}}
    return {"note": None, "values": {k: float(v) for k, v in values.items()},
            "evaluator": "PED-ANOVA (Optuna's default)"}


def _trial_row(trial: FrozenTrial, retried: dict[int, str], since: float) -> dict[str, Any]:
    value = trial.value if trial.state in (TrialState.COMPLETE, TrialState.PRUNED) else None
    state = trial.state.name.lower()
    if trial.state == TrialState.FAIL:
        state = "interrupted" if trial.number in retried else "failed"
    return {"number": trial.number, "state": state, "value": value,
            "start": _iso_dt(trial.datetime_start), "complete": _iso_dt(trial.datetime_complete),
            "tonight": trial.datetime_start is not None
            and trial.datetime_start.timestamp() >= since,
            "epochs": max(trial.intermediate_values, default=None),
            "params": trial.params, "retry_of": trial.system_attrs.get("failed_trial"),
            "stopped": retried.get(trial.number), "error": trial.user_attrs.get("error"),
            "worker": trial.user_attrs.get("worker")}


def _write_summary(records_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    atomic.write_json(records_dir / "summary.json", summary)
    return summary


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _now() -> str:
    return _iso(time.time())


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t).isoformat(timespec="seconds")


def _iso_dt(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")
