"""make status and make logs, on a night folder written by hand."""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

from overnight.night.status import (
    follow,
    format_status,
    gpu_usage,
    night_alive,
    night_status,
)

STARTED = "2026-01-02T21:40:00"


def _night(tmp_path: Path, features_status: str = "running") -> Path:
    work = tmp_path / "runs" / "2026-01-02"
    (work / "status").mkdir(parents=True)
    (work / "logs").mkdir()
    (work / "night.json").write_text(json.dumps({
        "date": "2026-01-02", "state": "running",
        "attempts": [{"start": "2026-01-02T21:30:00"}]}))
    for stage, status, start, seconds in [
            ("preflight", "ok", "2026-01-02T21:30:00", 58.0),
            ("windows", "ok", "2026-01-02T21:31:00", 400.0),
            ("features", features_status, STARTED, None)]:
        (work / "status" / f"{stage}.json").write_text(json.dumps({
            "stage": stage, "status": status, "start": start, "seconds": seconds,
            "log": f"logs/{stage}.log", "error": None}))
    (work / "logs" / "features.log").write_text(
        "=" * 78 + "\n2026-01-02T21:40:00  stage features started\n" + "=" * 78 + "\n"
        + "".join(f"21:4{i}:00 features:  {i * 10}%|##   | {i}/10 [00:0{i}<00:10]\n"
                  for i in range(1, 5))
        + "21:45:00 2026-01-02 21:45:00 INFO    overnight.features: slab 4 of 10 written\n")
    return work


def test_status_shows_the_running_stage_its_progress_and_elapsed_time(tmp_path):
    work = _night(tmp_path)
    now = datetime.fromisoformat(STARTED).timestamp() + 125
    status = night_status(work, now=now)

    assert status["current"]["stage"] == "features"
    assert status["elapsed_s"] == 125
    assert status["progress"] == "21:44:00 features:  40%|##   | 4/10 [00:04<00:10]"
    assert status["last_lines"][-1].endswith("slab 4 of 10 written")
    assert [s["stage"] for s in status["stages"]] == ["preflight", "windows", "features"]

    text = format_status(status, gpu="nvidia-smi:\n0, H100, 87 %, 30000 MiB, 81559 MiB")
    assert "running: features for 2 min 05 s" in text
    assert "progress: 21:44:00 features:  40%" in text
    assert "0, H100, 87 %, 30000 MiB" in text
    assert "night 2026-01-02: running, attempt 1" in text
    assert text.index("stages:") < text.index("running: features") < text.index("last lines")


def test_a_finished_night_shows_its_outcome_and_last_stage(tmp_path):
    work = _night(tmp_path, features_status="failed")
    record = json.loads((work / "night.json").read_text())
    record.update(state="finished", exit_code=1, outcome="overnight 2026-01-02: 1 stage(s) "
                  "failed (52 min)", details=["stage features failed (exit 1): MemoryError"])
    (work / "night.json").write_text(json.dumps(record))

    text = format_status(night_status(work))
    assert "exit code 1: overnight 2026-01-02: 1 stage(s) failed" in text
    assert "stage features failed (exit 1): MemoryError" in text
    assert "last stage: features" in text


def test_status_of_a_night_that_has_not_started(tmp_path):
    text = format_status(night_status(tmp_path / "runs" / "2026-01-03"))
    assert text.startswith("no night in") and "make overnight" in text


def test_following_a_night_that_has_not_started_says_so(tmp_path):
    out = io.StringIO()
    follow(tmp_path / "runs" / "2026-01-03", out, poll_s=0.01)
    assert out.getvalue().startswith("no night in")


def test_gpu_usage_asks_nvidia_smi_then_rocm_smi():
    asked = []

    def run(command):
        asked.append(command[0])
        return subprocess.CompletedProcess(command, 0, "device,GPU use (%)\ncard0,93\n", "")

    rocm_only = {"rocm-smi": "/opt/rocm/bin/rocm-smi"}.get
    assert gpu_usage(run, rocm_only) == "rocm-smi:\ndevice,GPU use (%)\ncard0,93"
    assert asked == ["rocm-smi"]
    assert gpu_usage(run, lambda _: None) is None


def test_follow_prints_the_log_tail_then_new_lines_until_the_night_ends(tmp_path):
    work = _night(tmp_path)
    (work / "night.log").write_text("".join(f"old line {i}\n" for i in range(20)))
    out = io.StringIO()
    polls = []

    def stop() -> bool:
        polls.append(1)
        if len(polls) == 1:
            with open(work / "night.log", "a") as log:
                log.write("new line\n")
            record = json.loads((work / "night.json").read_text())
            (work / "night.json").write_text(json.dumps({**record, "state": "finished"}))
        return False

    follow(work, out, poll_s=0.01, stop=stop)
    lines = out.getvalue().splitlines()
    assert lines[0] == "old line 12" and lines[-1] == "new line"


def _lock(tmp_path: Path, pid: int, work: Path) -> Path:
    lock = tmp_path / "runs" / ".lock"
    lock.write_text(f"pid {pid}, night 2026-01-02 in {work}, started 2026-01-02T21:30:00\n")
    return lock


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_killed_driver_not_yet_reaped_is_not_alive(tmp_path):
    work = _night(tmp_path)
    zombie = subprocess.Popen(["true"])  # exits at once; not waited for: a zombie
    try:
        time.sleep(0.3)
        assert not night_alive(_lock(tmp_path, zombie.pid, work), work)
    finally:
        zombie.wait()


def test_a_night_whose_driver_is_gone_shows_as_interrupted(tmp_path):
    work = _night(tmp_path)
    lock = _lock(tmp_path, _dead_pid(), work)

    status = night_status(work, lock_path=lock)
    text = format_status(status)

    assert status["interrupted"]["stage"] == "features"
    assert status["interrupted"]["stopped"] is not None  # the log's last write
    assert "interrupted at features: no process of this night is alive" in text
    assert "night 2026-01-02: interrupted, attempt 1" in text
    assert re.search(r"features\s+interrupted", text)
    assert "running" not in text
    # no lock file at all: nothing holds it, so nothing runs
    assert night_status(work, lock_path=tmp_path / "none")["interrupted"] is not None


def test_a_live_night_still_shows_as_running(tmp_path):
    import os

    work = _night(tmp_path)
    alive = night_status(work, lock_path=_lock(tmp_path, os.getpid(), work))
    assert alive["interrupted"] is None
    assert "running: features" in format_status(alive)
    # a live driver of another night does not keep this one alive
    other = _lock(tmp_path, os.getpid(), tmp_path / "runs" / "2026-01-03")
    assert night_status(work, lock_path=other)["interrupted"]["stage"] == "features"
    # without the lock, status cannot tell and says what the records say
    assert night_status(work)["interrupted"] is None


def test_status_shows_the_search_study_while_it_runs_and_after(tmp_path):
    work = _night(tmp_path, features_status="ok")
    start = datetime.fromisoformat(STARTED).timestamp()
    (work / "status" / "search.json").write_text(json.dumps({
        "stage": "search", "status": "running", "start": "2026-01-02T21:50:00",
        "seconds": None, "log": "logs/search.log", "error": None}))
    (work / "search").mkdir()
    (work / "search" / "progress.json").write_text(json.dumps({
        "study": "rt-0123456789abcdef", "end": start + 6 * 3600,
        "end_text": "2026-01-03T03:40:00", "since": start, "tonight": 7,
        "counts": {"complete": 9, "pruned": 4, "failed": 1, "interrupted": 0,
                   "running": 2, "waiting": 0},
        "best": {"number": 5, "tune_nrmse": 0.81234}}))
    text = format_status(night_status(work, now=start + 3600))
    line = next(line for line in text.splitlines() if line.startswith("  search:"))
    assert line == ("  search: study rt-0123456789abcdef: 9 complete, 4 pruned, 1 failed "
                    "(7 tonight), 2 running; best tune NRMSE 0.8123 (trial 5); 5 h 00 min "
                    "left (until 2026-01-03T03:40:00)")
    # once the stage has ended there is no time left to show
    (work / "status" / "search.json").write_text(json.dumps({
        "stage": "search", "status": "ok", "start": "2026-01-02T21:50:00", "seconds": 60,
        "log": "logs/search.log", "error": None}))
    assert format_status(night_status(work, now=start + 3600)).count("; not running") == 1
