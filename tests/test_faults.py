"""Faults, through the real Makefile on a tiny synthetic dataset: a broken job caught by the
preflight, SIGKILL in the middle of the features stage and of training, two overlapping
starts. After each, the champion is byte-identical unless the gate promoted."""

from __future__ import annotations

import fcntl
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import pytest

from overnight import atomic
from overnight.champion.compare import compare_and_promote
from overnight.config import CompareConfig

REPO = Path(__file__).resolve().parents[1]
DATE = "2026-01-02"
CONFIG = """
[windows]
val_fraction = 0.34
[night]
# the night's machinery is under test, not the models: two that read the raw window alone
# (trained before the features stage) and one that reads the features (after it)
models = ["baseline", "press", "hybrid"]
[train]
# one seed, and no sensor rotations (their montage and matrices cost each training's
# start-up half a second)
ensemble = 1
sensor_rotation_deg = 0
max_epochs = 4
patience = 4
n_filters = 8
batch_size = 32
device = "cpu"
[compare]
max_ms_per_window = 0  # the chain is under test, not the speed of a busy machine
"""
H5_DATASETS = {"windows.h5": {"eeg", "rt", "subject", "run", "trial"},
               "features.h5": {"features"}}


@pytest.fixture(scope="module")
def champion(tiny_night, tmp_path_factory) -> Path:
    """A submission folder with a champion (the best of the session's tiny models)."""
    folder = tmp_path_factory.mktemp("champion") / "submission"
    compare_and_promote(tiny_night.models, tiny_night.windows, tiny_night.split, folder,
                        folder.parent / "comparison.json", CompareConfig(max_ms_per_window=0.0))
    return folder


@pytest.fixture
def setup(tmp_path, tiny_data, champion) -> dict[str, str]:
    """The environment of a night in tmp_path (the Makefile reads its settings from it)."""
    shutil.copytree(champion, tmp_path / "submission")
    (tmp_path / "night.toml").write_text(CONFIG)
    (tmp_path / "setup-done").touch()
    return {**os.environ, "VENV": sys.prefix, "SETUP_STAMP": str(tmp_path / "setup-done"),
            "DATA": str(tiny_data.bids_root), "CONFIG": str(tmp_path / "night.toml"),
            "SUBMISSION": str(tmp_path / "submission"), "REPORTS": str(tmp_path / "reports"),
            "RUNS": str(tmp_path / "runs"), "DATE": DATE, "PREFLIGHT_SUBJECTS": "3"}


def _files(folder: Path) -> dict[str, str]:
    return {p.name: atomic.sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()}


def _start(env: dict[str, str], log_file: Path) -> subprocess.Popen[str]:
    """make overnight in its own process group, so a SIGKILL takes the whole chain."""
    log = open(log_file, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(["make", "-C", str(REPO), "overnight"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _driver(env: dict[str, str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """The night driver as cron-night.sh runs it (`make night-command`): its own exit code."""
    return subprocess.run(["bash", "-c", 'eval "$(make -s --no-print-directory night-command)"'],
                          cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)


def _wait_for(condition: Callable[[], bool], proc: subprocess.Popen[str], what: str,
              timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, f"the night ended before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s} s"
        time.sleep(0.05)


def _running(night: Path, stage: str, log_text: str) -> Callable[[], bool]:
    """True once the stage is marked running and its job has logged ``log_text``."""
    def check() -> bool:
        status = night / "status" / f"{stage}.json"
        log = night / "logs" / f"{stage}.log"
        return (status.exists() and '"running"' in status.read_text()
                and log.exists() and log_text in log.read_text())
    return check


def _kill(proc: subprocess.Popen[str]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _banner(html: str) -> str:
    return html[html.index("<header"):html.index("</header>")]


def test_preflight_catches_a_broken_job_and_leaves_the_champion(setup, tmp_path):
    env = {**setup, "JOB": f"{sys.executable} tests/fault_shim.py",
           "OVERNIGHT_FAULT": "hybrid-first-batch"}
    before = _files(tmp_path / "submission")
    started = time.monotonic()
    proc = _driver(env, timeout_s=300)
    seconds = time.monotonic() - started

    assert proc.returncode == 2, proc.stdout[-3000:]
    assert seconds < 120  # the preflight's budget is about a minute; the report adds seconds
    night = tmp_path / "runs" / DATE
    preflight = json.loads((night / "status" / "preflight.json").read_text())
    assert preflight["status"] == "failed"
    assert preflight["error"] == "RuntimeError: injected fault: the hybrid raises on its " \
                                 "first batch"
    assert not (night / "windows.h5").exists()  # the long stages never started
    assert _files(tmp_path / "submission") == before
    banner = _banner((tmp_path / "reports" / f"{DATE}.html").read_text())
    assert 'class="banner failed"' in banner and "Preflight failed" in banner
    assert "train-hybrid" in banner and "injected fault" in banner
    assert "champion is untouched" in banner
    outcome = json.loads((night / "night.json").read_text())
    assert outcome["exit_code"] == 2 and "preflight failed" in outcome["outcome"]


def test_killed_twice_the_night_resumes_and_completes(setup, tmp_path):
    night = tmp_path / "runs" / DATE
    before = _files(tmp_path / "submission")

    # 1. start; a second start while it runs exits at once with the lock message
    first = _start(setup, tmp_path / "first.log")
    _wait_for(lambda: (night / "status" / "preflight.json").exists(), first, "preflight")
    second = _driver(setup, timeout_s=60)
    assert second.returncode == 75
    assert "another night is running" in second.stdout
    # ... and the first goes on: kill it in the middle of the features stage
    _wait_for(_running(night, "features", "config:"), first, "features")
    _kill(first)
    assert not (night / "features.h5").exists()

    # 2. rerun: features again, then kill it in the middle of training the hybrid (make
    #    trained the baseline before the features stage, so it is done and stays done)
    baseline_status = (night / "status" / "train-baseline.json").read_text()
    rerun = _start(setup, tmp_path / "rerun.log")
    hybrid = night / "models" / "hybrid"
    _wait_for(lambda: (hybrid / "history.jsonl").exists(), rerun, "a trained hybrid epoch")
    _kill(rerun)
    assert not (hybrid / "model.json").exists()
    assert json.loads((night / "status" / "train-hybrid.json").read_text())["status"] \
        == "running"

    # 3. the next start, as cron makes it, completes the night and mails nothing
    cron = subprocess.run(["bash", "-c", f"cd {REPO} && scripts/cron-night.sh"], env=setup,
                          capture_output=True, text=True, timeout=300, check=False)
    assert cron.returncode == 0, cron.stdout[-3000:]
    assert cron.stdout == ""

    record = json.loads((night / "night.json").read_text())
    assert record["exit_code"] == 0 and len(record["attempts"]) == 3
    for stage in ("preflight", "windows", "features", "train-baseline", "train-hybrid",
                  "compare", "report"):
        assert json.loads((night / "status" / f"{stage}.json").read_text())["status"] == "ok"
    baseline = json.loads((night / "status" / "train-baseline.json").read_text())
    assert baseline.pop("reused") is True and baseline.pop("reused_at")  # done, not redone
    assert baseline == json.loads(baseline_status)
    epochs = [row["epoch"] for row in atomic.read_json_lines(hybrid / "history.jsonl")]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 4  # resumed, not restarted
    for folder in (night, night / "preflight"):
        for name, datasets in H5_DATASETS.items():
            with h5py.File(folder / name, "r") as h5:
                assert datasets <= set(h5), (folder / name, set(h5))
                assert h5[next(iter(datasets))].shape[0] > 0
    assert not list(night.rglob("*.tmp"))

    decision = json.loads((night / "comparison.json").read_text())["decision"]
    after = _files(tmp_path / "submission")
    if decision["promoted"]:
        champion = json.loads((tmp_path / "submission" / "champion.json").read_text())
        assert champion["model"] == decision["model"]
        assert {name: after[name] for name in champion["files"]} == champion["files"]
    else:
        assert after == before
    assert re.search(r"night 2026-01-02 in \S+: attempt 3", (night / "night.log").read_text())


def test_a_hanging_stage_is_stopped_and_the_night_goes_on(setup, tmp_path):
    pid_file = tmp_path / "hang.pid"
    # 24 s: the preflight's own features stage (a Numba compile at worst) fits in it
    (tmp_path / "night.toml").write_text(CONFIG.replace(
        "[night]\n", "[night]\nfeatures_limit_min = 0.4\nkill_grace_s = 1.0\n"))
    env = {**setup, "JOB": f"{sys.executable} tests/fault_shim.py",
           "OVERNIGHT_FAULT": "features-hang", "OVERNIGHT_HANG_PID_FILE": str(pid_file)}
    before = _files(tmp_path / "submission")
    proc = _driver(env, timeout_s=400)

    assert proc.returncode == 1, proc.stdout[-3000:]
    night = tmp_path / "runs" / DATE
    status = json.loads((night / "status" / "features.json").read_text())
    assert status["status"] == "timed out" and status["exit_code"] == 124
    assert "[night] features_limit_min = 0.4" in status["error"]
    # stopped once: the search, which reads the features, does not make them again
    assert "search: not run: its input features failed tonight" in \
        (night / "night.log").read_text()
    hung = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # deaf to SIGTERM, so SIGKILL took it
        os.kill(hung, 0)
    # the models without features trained and were compared; the hybrids could not start
    for model in ("baseline", "press"):
        assert (night / "models" / model / "model.json").exists()
    assert not (night / "models" / "hybrid").exists()
    assert json.loads((night / "comparison.json").read_text())["rows"]
    banner = _banner((tmp_path / "reports" / f"{DATE}.html").read_text())
    assert "features</strong> timed out" in banner and "features_limit_min" in banner
    # the lock is free: the next night can start
    with open(tmp_path / "runs" / ".lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    if not json.loads((night / "comparison.json").read_text())["decision"]["promoted"]:
        assert _files(tmp_path / "submission") == before


def test_a_full_disk_stops_the_night_cleanly(setup, tmp_path):
    # RLIMIT_FSIZE: no file may grow past 2 MB, so the preflight's window cache cannot be
    # written, as on a full disk; the logs, records and the report are smaller
    before = _files(tmp_path / "submission")
    limit = 2_000_000
    proc = subprocess.run(
        ["bash", "-c", 'eval "$(make -s --no-print-directory night-command)"'], cwd=REPO,
        env=setup, capture_output=True, text=True, timeout=300, check=False,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))

    assert proc.returncode == 2, proc.stdout[-3000:]
    night = tmp_path / "runs" / DATE
    windows = json.loads((night / "preflight" / "status" / "windows.json").read_text())
    assert windows["status"] == "failed"
    assert windows["error"].startswith("overnight.atomic.DiskFullError: [Errno 27] cannot "
                                       f"write {night}/preflight/windows.h5")
    assert "is free on the file system" in windows["error"]
    banner = _banner((tmp_path / "reports" / f"{DATE}.html").read_text())
    assert "Preflight failed" in banner and "DiskFullError" in banner
    assert _files(tmp_path / "submission") == before
    with open(tmp_path / "runs" / ".lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
