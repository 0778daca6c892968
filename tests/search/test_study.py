"""The study's name, storage and survival: named by the data, journal repaired after a kill
mid-write, dead workers' trials failed and requeued only when no worker runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from optuna.trial import TrialState

from overnight.config import SearchConfig, load_config
from overnight.search import study as search_study
from overnight.search.study import StudyPlace


def test_the_study_is_named_by_the_data_the_objective_sees_and_its_space(tiny_data,
                                                                         tmp_path):
    config = load_config(None)
    name, _ = search_study.night_study_name(tiny_data.windows, tiny_data.split, config)
    again, _ = search_study.night_study_name(tiny_data.windows, tiny_data.split, config)
    assert name == again and name.startswith("rt-")
    # a night whose search has other families cannot continue the study (Optuna keeps a
    # categorical parameter's choices): another study
    fewer = load_config(None, ["night.models=['baseline', 'hybrid']"])
    assert search_study.night_study_name(tiny_data.windows, tiny_data.split, fewer)[0] != name
    # another split of the same cache is other data for the objective: a new study
    split = json.loads(tiny_data.split.read_text())
    split["train"], split["tune"] = split["train"][1:], [*split["tune"], split["train"][0]]
    moved = tmp_path / "split.json"
    moved.write_text(json.dumps(split))
    assert search_study.night_study_name(tiny_data.windows, moved, config)[0] != name


def test_storage_comes_from_the_environment_and_its_password_stays_hidden():
    assert search_study.storage_url({}) is None
    assert search_study.storage_url({"SEARCH_STORAGE": " "}) is None
    url = "postgresql://me:s3cret@db.example:5432/optuna"
    assert search_study.storage_url({"SEARCH_STORAGE": url}) == url
    place = StudyPlace("rt-x", search_study.Path("/tmp/x"), url)
    assert "s3cret" not in place.storage_text() and ":***@db.example" in place.storage_text()
    with pytest.raises(ValueError, match=r"'sqlite:///x.db': expected a PostgreSQL URL"):
        search_study.storage_url({"SEARCH_STORAGE": "sqlite:///x.db"})


def _place(tmp_path) -> StudyPlace:
    return StudyPlace("rt-test", tmp_path / "rt-test")


def test_a_half_written_last_record_is_cut_and_the_study_opens(tmp_path):
    place = _place(tmp_path)
    study = search_study.open_study(place, SearchConfig(), seed=0)
    study.enqueue_trial({"x": 1.0})
    study.optimize(lambda t: t.suggest_float("x", 0, 2), n_trials=1)
    whole = place.journal.read_bytes()
    place.journal.write_bytes(whole + b'{"op_code": 5, "worker_id": "w", "tri')  # killed
    with pytest.raises(ValueError):  # what Optuna makes of it once a line follows
        with open(place.journal, "ab") as fh:
            fh.write(b"\n")
        search_study.open_study(place, SearchConfig(), seed=0).get_trials()
    place.journal.write_bytes(whole + b'{"op_code": 5, "worker_id": "w", "tri')
    assert search_study.repair_journal(place) == len(b'{"op_code": 5, "worker_id": "w", "tri')
    assert place.journal.read_bytes() == whole
    reopened = search_study.open_study(place, SearchConfig(), seed=0)
    assert [t.value for t in reopened.get_trials()] == [1.0]
    assert search_study.repair_journal(place) == 0


def test_a_dead_workers_trial_is_failed_and_requeued_once_no_worker_runs(tmp_path):
    place = _place(tmp_path)
    study = search_study.open_study(place, SearchConfig(), seed=0)
    trial = study.ask()  # a worker started it, reported an epoch, and died
    trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    trial.report(0.9, 1)
    # while a worker holds the lock, its running trials are left alone
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                               "fcntl.flock(f, fcntl.LOCK_SH); print('held', flush=True); "
                               "time.sleep(60)", str(place.lock)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert search_study.reap_dead_trials(study, place, "gone") == []
        assert study.get_trials()[0].state == TrialState.RUNNING
    finally:
        holder.kill()
        holder.wait()
    assert search_study.reap_dead_trials(study, place, "its worker was gone") == [0]
    failed, retry = study.get_trials()
    assert failed.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.params == failed.params and retry.intermediate_values == {1: 0.9}
    assert retry.system_attrs["failed_trial"] == 0
    assert retry.system_attrs["retry_reason"] == "its worker was gone"
    assert search_study.retried_trials(study.get_trials()) == {0: "its worker was gone"}
    # a second pass finds nothing to do: no trial is requeued twice
    assert search_study.reap_dead_trials(study, place, "again") == []
    assert len(study.get_trials()) == 2


def test_a_trial_requeued_too_often_is_not_requeued_again(tmp_path):
    place = _place(tmp_path)
    study = search_study.open_study(place, SearchConfig(), seed=0)
    study.ask().suggest_float("x", 0, 1)
    for attempt in range(search_study.MAX_RETRIES + 1):
        assert search_study.reap_dead_trials(study, place, "killed") == [attempt]
        if attempt < search_study.MAX_RETRIES:
            assert study.ask().number == attempt + 1  # the retry starts, and dies too
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.WAITING) == 0
    assert states.count(TrialState.FAIL) == search_study.MAX_RETRIES + 1
