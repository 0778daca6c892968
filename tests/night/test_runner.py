"""The stage runner: logs with times and banners, status records, the error line."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from overnight.config import NightConfig
from overnight.layout import NightFolder
from overnight.night.processes import process_alive
from overnight.night.records import read_record
from overnight.night.runner import (
    TIMED_OUT_EXIT,
    TimeLimit,
    run_stage,
    stage_time_limit,
    stamped,
)

REPO = Path(__file__).resolve().parents[2]


def _status(work: Path, stage: str) -> dict:
    return json.loads((work / "status" / f"{stage}.json").read_text())


def test_ok_stage_logs_with_times_and_records_status(tmp_path, capsys):
    code = run_stage("windows", [sys.executable, "-c", "print('one'); print('two')"],
                     NightFolder(tmp_path))

    assert code == 0
    status = _status(tmp_path, "windows")
    assert status["status"] == "ok" and status["exit_code"] == 0 and status["error"] is None
    assert status["seconds"] >= 0 and status["start"] <= status["end"]
    log = (tmp_path / status["log"]).read_text()
    assert re.search(r"^\d{2}:\d{2}:\d{2} one$", log, re.M)
    assert re.search(r"stage windows started\ncommand: .*python", log)
    assert "stage windows ok after" in log
    assert capsys.readouterr().out == "one\ntwo\n"  # the console gets the output as is


def test_failed_stage_records_the_exception_line(tmp_path):
    script = ("import logging, sys; logging.basicConfig(format='%(asctime)s %(levelname)-7s "
              "%(name)s: %(message)s'); logging.getLogger('job').info('x');"
              "raise ValueError('train.max_epoch is not a setting')")
    code = run_stage("train-hybrid", [sys.executable, "-c", script], NightFolder(tmp_path))

    assert code == 1
    status = _status(tmp_path, "train-hybrid")
    assert status["status"] == "failed" and status["exit_code"] == 1
    assert status["error"] == "ValueError: train.max_epoch is not a setting"
    log = (tmp_path / "logs" / "train-hybrid.log").read_text()
    assert "FAILED, exit code 1" in log and "error: ValueError" in log


def test_error_falls_back_to_the_last_line_without_its_log_prefix(tmp_path):
    script = ("import sys; print('2026-01-02 21:30:00 ERROR   __main__: GPU=amd but torch "
              "sees no GPU'); sys.exit(3)")
    assert run_stage("device", [sys.executable, "-c", script], NightFolder(tmp_path)) == 3
    assert _status(tmp_path, "device")["error"] == "GPU=amd but torch sees no GPU"


def test_error_skips_the_lines_make_adds(tmp_path):
    script = ("import sys; print('RUNNER=docker: docker not found on PATH: install Docker'); "
              "print('make[1]: *** [Makefile:96: preflight] Error 1'); sys.exit(2)")
    assert run_stage("preflight", [sys.executable, "-c", script], NightFolder(tmp_path)) == 2
    assert _status(tmp_path, "preflight")["error"] == ("RUNNER=docker: docker not found on "
                                                       "PATH: install Docker")


def test_command_that_cannot_start(tmp_path):
    assert run_stage("windows", [str(tmp_path / "no-such-python")],
                     NightFolder(tmp_path)) == 127
    assert "cannot start" in _status(tmp_path, "windows")["error"]


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_engine_exit_125_names_the_fix(tmp_path, monkeypatch, engine):
    fake = tmp_path / "bin" / engine
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Unable to find image overnight:rocm locally' >&2\n"
                    "exit 125\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")

    assert run_stage("windows", [engine, "run", "overnight:rocm"], NightFolder(tmp_path)) == 125
    error = _status(tmp_path, "windows")["error"]
    assert error.startswith(f"{engine} could not start the container") and "make image" in error


def test_a_timed_out_container_is_removed_by_the_name_it_ran_under(tmp_path, monkeypatch):
    # The client of a deaf container is killed at the limit; the container itself lives on
    # in the engine (tests/image runs this against a real one): the runner removes it.
    fake = tmp_path / "bin" / "podman"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
if [ "$1" = run ]; then echo "$3" > {tmp_path}/ran; trap '' TERM; while :; do sleep 1; done; fi
if [ "$1" = rm ]; then echo "$3" > {tmp_path}/removed; echo "$3"; fi
""")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")

    code = run_stage("train-baseline", ["podman", "run", "--rm", "img", "python"],
                     NightFolder(tmp_path), limit=TimeLimit(1.0, grace_s=0.5))
    assert code == TIMED_OUT_EXIT
    name = (tmp_path / "ran").read_text().strip()
    assert name.startswith("overnight-train-baseline-")
    assert (tmp_path / "removed").read_text().strip() == name
    log = (tmp_path / "logs" / "train-baseline.log").read_text()
    assert f"removed container {name}" in log


def test_a_stage_container_is_removed_when_it_ends_and_its_exit_code_kept(tmp_path,
                                                                          monkeypatch):
    # It runs without --rm (an engine may report 0 for a --rm container whatever its job
    # returned); the runner removes it by name, and says nothing about it in the log.
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(f"""#!/bin/sh
if [ "$1" = run ]; then echo "$@" > {tmp_path}/ran; exit 3; fi
if [ "$1" = rm ]; then echo "$3" > {tmp_path}/removed; echo "$3"; fi
""")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")

    code = run_stage("train-baseline", ["docker", "run", "--rm", "img", "python"],
                     NightFolder(tmp_path))
    assert code == 3
    ran = (tmp_path / "ran").read_text().split()
    assert "--rm" not in ran
    assert (tmp_path / "removed").read_text().strip() == ran[2]
    assert "removed container" not in (tmp_path / "logs" / "train-baseline.log").read_text()


def test_stamped_keeps_lines_that_carry_a_time():
    line = "2026-01-02 21:30:00 INFO    overnight: config\n"
    assert stamped(line) == line
    assert re.fullmatch(r"\d{2}:\d{2}:\d{2} 45%\|####\n", stamped("45%|####\n"))


def test_input_validation(tmp_path):
    with pytest.raises(ValueError, match="needs a command"):
        run_stage("windows", [], NightFolder(tmp_path))
    with pytest.raises(ValueError, match=r"stage='\.\./x'"):
        run_stage("../x", ["true"], NightFolder(tmp_path))


def test_read_record_is_none_for_missing_or_odd_files(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "ok.json").write_text('{"status": "ok"}')
    assert read_record(tmp_path / "missing.json") is None
    assert read_record(tmp_path / "list.json") is None
    assert read_record(tmp_path / "broken.json") is None
    assert read_record(tmp_path / "ok.json") == {"status": "ok"}


def test_job_returns_the_exit_code(tmp_path):
    spec = importlib.util.spec_from_file_location("run_stage_job", REPO / "jobs" / "run_stage.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    code = job.main(["--work", str(tmp_path), "synth", "--", sys.executable, "-c",
                     "raise SystemExit(4)"])
    assert code == 4 and _status(tmp_path, "synth")["exit_code"] == 4


# --- Time limits -----------------------------------------------------------------------

def test_a_stage_past_its_limit_is_stopped_with_its_children(tmp_path):
    # the job ignores SIGTERM and leaves a child that holds the output pipe
    script = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, "
              "signal.SIG_IGN); child = subprocess.Popen([sys.executable, '-c', "
              "'import time; time.sleep(600)']); open(sys.argv[1], 'w').write(str(child.pid));"
              "print('working', flush=True); time.sleep(600)")
    pid_file = tmp_path / "child.pid"
    limit = TimeLimit(1.0, grace_s=0.5, why="[night] features_limit_min = 0.0167")
    code = run_stage("features", [sys.executable, "-c", script, str(pid_file)],
                     NightFolder(tmp_path), limit=limit)

    assert code == TIMED_OUT_EXIT
    status = _status(tmp_path, "features")
    assert status["status"] == "timed out" and status["seconds"] < 30
    assert status["error"].startswith("timed out: stopped after 2 s") or \
        status["error"].startswith("timed out: stopped after 1 s")
    assert status["error"].endswith("([night] features_limit_min = 0.0167)")
    assert _ends(int(pid_file.read_text()))
    assert "stage features TIMED OUT" in (tmp_path / "logs" / "features.log").read_text()


def _ends(pid: int, within_s: float = 5.0) -> bool:
    """Whether ``pid`` stops running within a few seconds (SIGKILL is delivered async)."""
    deadline = time.monotonic() + within_s
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_stage_in_time_is_not_touched(tmp_path):
    code = run_stage("windows", [sys.executable, "-c", "print('quick')"], NightFolder(tmp_path),
                     limit=TimeLimit(60.0))
    assert code == 0 and _status(tmp_path, "windows")["status"] == "ok"


def test_no_time_left_means_the_stage_does_not_start(tmp_path):
    marker = tmp_path / "ran"
    code = run_stage("compare", [sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
                     NightFolder(tmp_path), limit=TimeLimit(-5.0, why="the night's limit"))
    assert code == TIMED_OUT_EXIT and not marker.exists()
    assert _status(tmp_path, "compare")["status"] == "timed out"


def test_stage_limits_come_from_the_config_and_the_night_deadline():
    limits = NightConfig(train_limit_min=100.0, night_limit_h=9.0)
    assert stage_time_limit("train-press-hybrid", limits, None).seconds == 6000.0
    assert stage_time_limit("synth", limits, None).why == "[night] other_limit_min = 60"
    soon = time.time() + 600.0
    cut = stage_time_limit("train-baseline", limits, soon)
    assert 590.0 < cut.seconds <= 600.0 and "night_limit_h" in cut.why
    # the report always gets its own limit, so the morning has its page
    assert stage_time_limit("report", limits, time.time() - 60).seconds == 600.0


def test_an_orphan_holding_the_output_is_stopped_at_the_limit(tmp_path):
    # the job starts a grandchild that keeps the output pipe open, and exits at once: the
    # runner adopts the orphan, so the limit still finds and stops it
    script = ("import os, subprocess, sys; pid = os.fork()\n"
              "if pid == 0:\n"
              "    child = subprocess.Popen([sys.executable, '-c', 'import time; "
              "time.sleep(600)'])\n"
              "    open(sys.argv[1], 'w').write(str(child.pid)); os._exit(0)\n"
              "os.waitpid(pid, 0)\n")
    pid_file = tmp_path / "orphan.pid"
    started = time.monotonic()
    code = run_stage("windows", [sys.executable, "-c", script, str(pid_file)],
                     NightFolder(tmp_path), limit=TimeLimit(2.0, grace_s=0.5))
    assert code == TIMED_OUT_EXIT and time.monotonic() - started < 30
    assert _ends(int(pid_file.read_text()))
