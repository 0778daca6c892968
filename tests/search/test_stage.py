"""The search stage on the tiny night: real Optuna studies in real journal files, real
worker processes, real kills. Off when it should be; a kill mid-trial loses no trial and
counts none twice; two workers share a study; the validation windows are never read; the
best trial becomes models/search, which compare's loader predicts with."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import torch
from optuna.trial import TrialState

from overnight.config import Config, load_config
from overnight.evaluation import load_trained_model, predict
from overnight.search import stage
from overnight.search import study as search_study
from overnight.search.worker import Inputs, run_worker
from overnight.windows.cache import load_windows, open_cache
from overnight.windows.split import read_split
from tests.fault_shim import HANG_PID_FILE, SEARCH_HANG
from tests.helpers import record_cache_reads
from tests.search.conftest import REPO, job_command, run_job, the_study
from tests.training.test_fit import _poison_validation


def _inputs(night) -> Inputs:
    return Inputs(night.windows, night.split, night.features)


def _with(config: Config, **search) -> Config:
    return dataclasses.replace(config, search=dataclasses.replace(config.search, **search))


def _history_epochs(trial_dir) -> list[int]:
    """The epochs a trial's (first) training logged, in order."""
    first = trial_dir / "member-0" if (trial_dir / "member-0").is_dir() else trial_dir
    return [json.loads(line)["epoch"] for line in (first / "history.jsonl").read_text()
            .splitlines()]


def test_the_search_is_off_without_a_budget_and_on_a_cpu_unless_asked(tiny_data, tmp_path,
                                                                      search_config):
    _, config = search_config
    for settings, why in (({"budget_min": 0.0}, "budget_min = 0"),
                          ({"on_cpu": False}, "SEARCH_MIN=<minutes>")):
        records = tmp_path / "search"
        summary = stage.run_search(_inputs(tiny_data), tmp_path / "models" / "search",
                                   records, tmp_path / "studies", _with(config, **settings),
                                   ["false"])
        assert why in summary["off"]
        assert json.loads((records / "summary.json").read_text())["off"] == summary["off"]
        assert not (tmp_path / "models").exists() and not (tmp_path / "studies").exists()


def test_the_search_ends_at_its_budget_or_the_nights_end_less_the_reserve(search_config):
    _, config = search_config
    cfg = _with(config, budget_min=60.0, reserve_min=30.0)
    assert stage.search_end(cfg, 1000.0, None) == 1000.0 + 3600
    assert stage.search_end(cfg, 1000.0, 1000.0 + 7200) == 1000.0 + 3600
    assert stage.search_end(cfg, 1000.0, 1000.0 + 3000) == 1000.0 + 3000 - 1800


def test_a_kill_mid_trial_loses_no_trial_and_counts_none_twice(tiny_data, tmp_path,
                                                              search_config):
    config_path, config = search_config
    studies, records = tmp_path / "studies", tmp_path / "night" / "search"
    command = job_command(config_path, tiny_data, studies, records)
    pid_file = tmp_path / "worker.pid"
    now = time.time()
    # a worker hangs after the first epoch of its first trial (its checkpoint written)...
    worker = subprocess.Popen(
        [command[0], str(REPO / "tests" / "fault_shim.py"), *command[1:], "--worker-index",
         "0", "--end", f"{now + 600}", "--since", f"{now}"],
        env={**os.environ, "OVERNIGHT_FAULT": SEARCH_HANG, HANG_PID_FILE: str(pid_file),
             "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert worker.poll() is None, "the worker ended before its first epoch"
            assert time.monotonic() < deadline, "no first epoch within 240 s"
            time.sleep(0.2)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)  # ... and is killed
    finally:
        worker.kill()
        worker.wait()
    (killed,) = the_study(studies).get_trials()
    assert killed.state == TrialState.RUNNING and killed.intermediate_values.keys() == {1}

    # the rerun fails the dead trial, requeues it and resumes its training, then goes on
    summary = stage.run_search(_inputs(tiny_data), tmp_path / "night" / "models" / "search",
                               records, studies, _with(config, max_trials=2),
                               [*command, "--set", "search.max_trials=2"])
    assert summary["reaped"] == [0] and not summary["worker_errors"]
    trials = the_study(studies).get_trials()
    failed, retry, new = trials  # the killed trial, its retry, and one new trial
    assert failed.state == TrialState.FAIL
    assert "its worker was gone" in retry.system_attrs["retry_reason"]
    assert retry.system_attrs["failed_trial"] == 0 and retry.params == failed.params
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED)
    # no epoch lost or done twice: epoch 1 came from the killed worker, the rest resumed
    place = search_study.StudyPlace(summary["study"], studies / summary["study"])
    assert _history_epochs(place.trial_dir(0)) == sorted(retry.intermediate_values)
    assert sorted(retry.intermediate_values)[0] == 1 and retry.intermediate_values[1] == \
        killed.intermediate_values[1]
    # two trials finished this run, each once; none is left running or waiting
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 2 == sum(summary["counts"][k] for k in ("complete", "pruned"))
    assert summary["counts"]["interrupted"] == 1 and summary["counts"]["failed"] == 0
    assert not summary["counts"]["running"] and not summary["counts"]["waiting"]
    assert new.state in (TrialState.COMPLETE, TrialState.PRUNED) and "failed_trial" not in \
        new.system_attrs


def test_two_workers_share_the_study_without_duplicate_trials(tiny_data, tmp_path,
                                                             search_config):
    config_path, _ = search_config
    studies, records = tmp_path / "studies", tmp_path / "search"
    command = job_command(config_path, tiny_data, studies, records, "--set",
                          "search.max_trials=3", "--set", "train.max_epochs=1")
    now = time.time()
    workers = [subprocess.Popen([*command, "--worker-index", str(i), "--workers", "2",
                                 "--end", f"{now + 600}", "--since", f"{now}"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
               for i in range(2)]
    outputs = [w.communicate(timeout=400)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    trials = the_study(studies).get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    # each stops once three finished; one still running then finishes too
    assert 3 <= len(finished) <= 4 and len(finished) == len(trials)
    assert len({t.number for t in trials}) == len(trials)
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == len(trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both took trials
    folders = sorted(p.name for p in studies.glob("*/trials/*"))
    assert folders == [f"{t.number:05d}" for t in trials]  # one folder per trial


def test_the_search_never_reads_a_validation_window(tiny_data, tmp_path, monkeypatch,
                                                   search_config):
    """Validation windows poisoned (NaN, RT 99 s) change no trial, and no read of the caches
    touches their rows: the workers, the data hash and the best model's copy included."""
    _, config = search_config
    config = dataclasses.replace(_with(config, max_trials=2), train=dataclasses.replace(
        config.train, max_epochs=1, patience=1))
    with open_cache(tiny_data.windows) as cache:
        val_rows = np.flatnonzero(np.isin(cache.subjects(), read_split(tiny_data.split)["val"]))
    poisoned = Inputs(tmp_path / "windows.h5", tiny_data.split, tmp_path / "features.h5")
    _poison_validation(tiny_data.windows, poisoned.windows, val_rows,
                       {"eeg": np.nan, "rt": 99.0})
    _poison_validation(tiny_data.features, poisoned.features, val_rows, {"features": np.nan})
    read = record_cache_reads(monkeypatch)
    results = {}
    for kind, inputs in (("clean", _inputs(tiny_data)), ("poisoned", poisoned)):
        name = search_study.night_study_name(inputs.windows, inputs.split, config)[0]
        place = search_study.StudyPlace(name, tmp_path / kind / name)
        run_worker(inputs, place, config, end=time.time() + 600, since=0.0)
        study = search_study.open_study(place, config.search, seed=0)
        stage.materialize(study, place, inputs, config, tmp_path / kind / "model",
                          tmp_path / kind)
        results[kind] = (name, [(t.state, t.value, t.params) for t in study.get_trials()])
    assert results["clean"] == results["poisoned"]  # the same study name, the same trials
    assert read and not np.isin(np.concatenate(read), val_rows).any()
    clean = torch.load(tmp_path / "clean" / "model" / "model.pt", weights_only=True)
    dirty = torch.load(tmp_path / "poisoned" / "model" / "model.pt", weights_only=True)
    for key in clean:
        torch.testing.assert_close(clean[key], dirty[key], rtol=0, atol=0)


def test_time_up_stops_the_trial_after_its_epoch_and_requeues_it(tiny_data, tmp_path,
                                                               search_config):
    _, config = search_config
    # a trial far longer than the two seconds left: it stops after an epoch
    config = dataclasses.replace(_with(config, startup_trials=1),
                                 train=dataclasses.replace(config.train, max_epochs=200,
                                                           patience=200))
    place = search_study.StudyPlace("rt-time", tmp_path / "rt-time")
    assert run_worker(_inputs(tiny_data), place, config, end=time.time() + 2.0,
                      since=time.time()) == 0
    study = search_study.open_study(place, config.search, seed=0)
    stopped, retry = study.get_trials()
    assert stopped.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert "time was up after epoch" in retry.system_attrs["retry_reason"]
    assert retry.params == stopped.params
    first = place.trial_dir(0) / ("member-0" if stopped.params["ensemble"] > 1 else "")
    assert (first / "checkpoint.pt").is_file()  # the retry resumes from it
    assert len(_history_epochs(place.trial_dir(0))) == max(stopped.intermediate_values) < 200


def test_the_best_trial_becomes_a_model_compare_can_score(tiny_data, tmp_path,
                                                         search_config):
    config_path, config = search_config
    settings = ["search.max_trials=2", "train.max_epochs=1"]
    config = load_config(config_path, settings)
    records, models = tmp_path / "night" / "search", tmp_path / "night" / "models"
    command = job_command(config_path, tiny_data, tmp_path / "studies", records,
                          *[word for s in settings for word in ("--set", s)])
    summary = stage.run_search(_inputs(tiny_data), models / "search", records,
                               tmp_path / "studies", config, command)
    best = summary["best"]
    assert best is not None and summary["model"]["trial"] == best["number"]
    meta = json.loads((models / "search" / "model.json").read_text())
    assert meta["model"] == best["params"]["model"]
    assert meta["best_tune_nrmse"] == best["tune_nrmse"]
    assert meta["search"]["study"] == summary["study"]
    assert not list((models / "search").rglob("checkpoint.pt"))
    model, _ = load_trained_model(models / "search")
    val = load_windows(tiny_data.windows, read_split(tiny_data.split)["val"])
    assert np.isfinite(predict(model, val.eeg)).all()
    progress = json.loads((records / "progress.json").read_text())
    assert progress["best"]["number"] == best["number"] and progress["tonight"] == 2
    # only the best trial keeps weights; no trial keeps a checkpoint
    weights = {p.relative_to(tmp_path / "studies").parts[2]
               for p in (tmp_path / "studies").rglob("model.pt")}
    assert weights == {f"{best['number']:05d}"}
    # a rerun with the same best leaves the model alone
    before = (models / "search" / "model.json").stat().st_mtime_ns
    again = stage.materialize(the_study(tmp_path / "studies"), search_study.StudyPlace(
        summary["study"], tmp_path / "studies" / summary["study"]), _inputs(tiny_data),
        config, models / "search", records)
    assert again["how"] == "unchanged since the last run"
    assert (models / "search" / "model.json").stat().st_mtime_ns == before
    out = run_job([sys.executable, str(REPO / "jobs" / "search_defaults.py"), "--config",
                   str(config_path), "--studies", str(tmp_path / "studies")])
    assert f"best: trial {best['number']}" in out and "[train]" in out
