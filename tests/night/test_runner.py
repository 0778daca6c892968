"""The stage runner: logs with times and banners, status records, the error line."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest

from overnight.layout import NightFolder
from overnight.night.records import read_record
from overnight.night.runner import run_stage, stamped

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


def test_docker_exit_125_names_the_fix(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Unable to find image overnight:rocm locally' >&2\n"
                    "exit 125\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")

    assert run_stage("windows", ["docker", "run", "overnight:rocm"], NightFolder(tmp_path)) == 125
    assert "make image" in _status(tmp_path, "windows")["error"]


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
