"""A study shared through a real PostgreSQL server, started here (Debian's ``postgresql``
package; ``.ci/run`` installs it): a worker killed mid-trial is found by Optuna's heartbeat
and its trial requeued; two workers, one per GPU, share the study; the password never
shows. Skipped, with the reason, where no server can run."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from overnight.config import load_config
from overnight.search import stage
from overnight.search import study as search_study
from overnight.search.worker import Inputs
from tests.fault_shim import HANG_PID_FILE, SEARCH_HANG
from tests.search.conftest import REPO, job_command

PASSWORD = "not-in-any-log"


def _server_binaries() -> Path | None:
    """The folder of ``initdb`` and ``postgres``: Debian keeps them off PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_server_user() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the package's postgres user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run the server as")
    return ["runuser", "-u", "postgres", "--"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    """A PostgreSQL server on 127.0.0.1: its port."""
    binaries = _server_binaries()
    if binaries is None:
        pytest.skip("no PostgreSQL server here (initdb, postgres): apt-get install postgresql")
    psycopg = pytest.importorskip("psycopg")
    runas = _as_server_user()
    # not below pytest's folders, which only their owner may enter
    root = Path(tempfile.mkdtemp(prefix="overnight-postgres-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if runas:
        for path in (root, sockets):
            shutil.chown(path, "postgres")
    subprocess.run([*runas, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U",
                    "overnight", "--no-sync"], check=True, capture_output=True, timeout=120)
    port = _free_port()
    process = subprocess.Popen([*runas, str(binaries / "postgres"), "-D", str(data), "-p",
                               str(port), "-k", str(sockets), "-c",
                               "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(host="127.0.0.1", port=port, user="overnight",
                                dbname="postgres").close()
                break
            except psycopg.OperationalError:
                assert process.poll() is None, "the PostgreSQL server did not start"
                assert time.monotonic() < deadline, "PostgreSQL not ready within 60 s"
                time.sleep(0.3)
        yield port
    finally:  # pg_ctl's fast shutdown: a signal to runuser would not reach the server
        subprocess.run([*runas, str(binaries / "pg_ctl"), "stop", "-D", str(data), "-m",
                        "fast"], capture_output=True, timeout=60, check=False)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres(server: int) -> str:
    """A new database on the server, for one test: its URL (with a password the server
    does not ask for, to show that none reaches a log)."""
    import psycopg

    name = f"optuna_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host="127.0.0.1", port=server, user="overnight", dbname="postgres",
                         autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return f"postgresql://overnight:{PASSWORD}@127.0.0.1:{server}/{name}"


def test_a_killed_worker_is_found_by_its_heartbeat_and_its_trial_requeued(
        postgres, tiny_data, tmp_path, search_config):
    config_path, _ = search_config
    config = load_config(config_path, ["search.heartbeat_s=1"])
    studies = tmp_path / "studies"
    command = job_command(config_path, tiny_data, studies, tmp_path / "search", "--set",
                          "search.heartbeat_s=1")
    pid_file = tmp_path / "worker.pid"
    now = time.time()
    env = {**os.environ, "SEARCH_STORAGE": postgres, "OVERNIGHT_FAULT": SEARCH_HANG,
           HANG_PID_FILE: str(pid_file), "OMP_NUM_THREADS": "1"}
    worker = subprocess.Popen([command[0], str(REPO / "tests" / "fault_shim.py"),
                               *command[1:], "--worker-index", "0", "--end", f"{now + 600}",
                               "--since", f"{now}"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert worker.poll() is None, worker.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no first epoch within 240 s"
            time.sleep(0.2)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        output = worker.communicate(timeout=30)[0]
    finally:
        worker.kill()
        worker.wait()
    assert PASSWORD not in output
    name = search_study.night_study_name(tiny_data.windows, tiny_data.split, config)[0]
    place = search_study.StudyPlace(name, studies / name, postgres)
    study = search_study.open_study(place, config.search, seed=0)
    (running,) = study.get_trials()
    assert running.state == TrialState.RUNNING
    time.sleep(2.5)  # past the grace period: twice the heartbeat
    assert search_study.reap_dead_trials(study, place, "unused with PostgreSQL") == [0]
    failed, retry = study.get_trials()
    assert failed.state == TrialState.FAIL and retry.state == TrialState.WAITING
    assert retry.params == failed.params and retry.system_attrs["failed_trial"] == 0
    assert "no heartbeat from its worker for 2 s" in retry.system_attrs["retry_reason"]
    assert PASSWORD not in place.storage_text()


@pytest.mark.slow
def test_two_workers_one_per_gpu_share_a_postgres_study(postgres, tiny_data, tmp_path,
                                                        search_config, monkeypatch):
    config_path, _ = search_config
    config = load_config(config_path, ["search.max_trials=3"])
    records = tmp_path / "night" / "search"
    command = job_command(config_path, tiny_data, tmp_path / "studies", records, "--set",
                          "search.max_trials=3")
    monkeypatch.setenv("SEARCH_STORAGE", postgres)
    summary = stage.run_search(Inputs(tiny_data.windows, tiny_data.split, tiny_data.features),
                               tmp_path / "night" / "models" / "search", records,
                               tmp_path / "studies", config, command, gpus=("0", "1"),
                               storage=postgres)
    assert not summary["worker_errors"]
    trials = summary["trials"]
    assert 3 <= sum(summary["counts"][k] for k in ("complete", "pruned")) <= 4
    assert len({t["number"] for t in trials}) == len(trials)
    assert len({t["worker"] for t in trials}) == 2
    for path in (records / "summary.json", records / "progress.json",
                 tmp_path / "night" / "models" / "search" / "model.json"):
        assert PASSWORD not in path.read_text() and ":***@127.0.0.1" in path.read_text()
    assert json.loads((tmp_path / "night" / "models" / "search" / "model.json").read_text()
                      )["search"]["trial"] == summary["best"]["number"]
