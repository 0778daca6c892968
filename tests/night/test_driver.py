"""The night driver with a fake `make`: order, resume, exit codes, lock, notify, records."""

from __future__ import annotations

import fcntl
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from overnight.config import NightConfig
from overnight.layout import NightFolder
from overnight.models.catalog import load_catalog
from overnight.night import records
from overnight.night.driver import (
    EXIT_LOCKED,
    EXIT_NO_REPORT,
    EXIT_OK,
    EXIT_PREFLIGHT_FAILED,
    EXIT_STAGE_FAILED,
    Night,
    dry_run,
    run_night,
)

# The night's stages with the default [night] models: every registered one.
MODEL_STAGES = load_catalog().model_stages()
PREFLIGHT_STAGES = load_catalog().preflight_stages()

# Plays the Makefile: writes the status records the targets' stages would, skips stages
# whose record says ok (make finds their outputs up to date; `-q` answers so) and fails
# the stages named in FAKE_FAIL (comma-separated; "preflight:<stage>" for the preflight's
# folder). Without -k it stops at the first failure, as make does. Every call is appended to
# FAKE_CALLS.
FAKE_MAKE = r'''
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
work = Path(next(a for a in args if a.startswith("WORK="))[5:])
targets = [a for a in args if "=" not in a and not a.startswith("-")]
with open(os.environ["FAKE_CALLS"], "a") as calls:
    calls.write(" ".join(args) + "\n")
fail = set(filter(None, os.environ.get("FAKE_FAIL", "").split(",")))
preflight = work.name == "preflight"

def done(stage):
    path = work / "status" / f"{stage}.json"
    return stage != "report" and path.exists() and json.loads(path.read_text())["status"] == "ok"

if "-n" in args:
    print("would run", " ".join(targets)); sys.exit(0)
if "-q" in args:
    sys.exit(0 if all(done(t) for t in targets) else 1)
code = 0
for stage in targets:
    if done(stage):
        print(f"{stage} up to date"); continue
    failed = (f"preflight:{stage}" if preflight else stage) in fail
    (work / "status").mkdir(parents=True, exist_ok=True)
    (work / "status" / f"{stage}.json").write_text(json.dumps({
        "stage": stage, "status": "failed" if failed else "ok", "start": "2026-01-02T21:30:00",
        "exit_code": 1 if failed else 0, "log": f"logs/{stage}.log",
        "error": f"RuntimeError: {stage} broke" if failed else None}))
    print(f"{stage} {'failed' if failed else 'ok'}")
    if stage == "windows" and not failed:
        (work / "split.json").write_text(json.dumps({"train": ["A", "B"], "val": ["C"]}))
    if stage == "compare" and not failed:
        (work / "comparison.json").write_text(json.dumps({"decision": {
            "promoted": True, "model": "hybrid", "reason": "hybrid beats the champion"}}))
    if failed:
        code = 2
        if "-k" not in args:
            break
sys.exit(code)
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    script = tmp_path / "fake_make.py"
    script.write_text(FAKE_MAKE)
    calls = tmp_path / "calls.txt"
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.delenv("FAKE_FAIL", raising=False)
    data = tmp_path / "data"
    for subject in ("A", "B", "C", "D"):
        recording = (data / f"sub-{subject}" / "eeg"
                     / f"sub-{subject}_task-contrastChangeDetection_run-1_eeg.set")
        recording.parent.mkdir(parents=True)
        recording.write_bytes(b"")

    def make_night(**kwargs) -> Night:
        settings = {"work_dir": tmp_path / "runs" / "2026-01-02", "date": "2026-01-02",
                    "lock_path": tmp_path / "runs" / ".lock",
                    "reports_dir": tmp_path / "reports", "data": (data,),
                    "submission_dir": tmp_path / "submission", "preflight_subjects": 2,
                    "preflight_max_subjects": 3,
                    "make": (sys.executable, str(script)), "runner": "local", "gpu": "none",
                    "image": "overnight:cpu", **kwargs}
        return Night(**settings)

    def calls_made(queries: bool = False) -> list[str]:
        """The sub-makes, without the `make -q` questions unless asked."""
        made = calls.read_text().splitlines() if calls.exists() else []
        return [c for c in made if queries or not c.startswith("-q ")]

    return make_night, calls_made


def _record(night: Night) -> dict:
    return json.loads((night.work_dir / "night.json").read_text())


def test_a_good_night_runs_every_step_in_order(fake):
    make_night, calls = fake
    night = make_night()

    started = time.time()
    assert run_night(night) == EXIT_OK
    # every sub-make gets the attempt's deadline: no stage runs past the night's 9 hours
    deadline = started + 9 * 3600
    suffix = "WORK=" + str(night.work_dir) + " DATE=2026-01-02"
    made = calls()
    for call in made:
        found = re.search(r" NIGHT_DEADLINE=(\d+)", call)
        assert found and abs(int(found[1]) - deadline) < 60
    preflight, *rest = [re.sub(r" NIGHT_DEADLINE=\d+", "", call) for call in made]
    assert preflight.startswith(" ".join(PREFLIGHT_STAGES) + f" WORK={night.work_dir}/preflight")
    assert f"DATA={night.work_dir}/preflight/bids/1-data " in preflight
    assert "WINDOWS_SET=--enough-subjects 2 --set 'windows.val_releases=[]'" in preflight
    assert "TRAIN_SET=--set train.max_epochs=1 --set train.patience=1" in preflight
    # the preflight's search: one trial, in a study of its own, never a shared database
    assert "SEARCH_SET=--set search.max_trials=1" in preflight
    # its compare checks the submission, not the speed of one-epoch models
    assert "COMPARE_SET=--set compare.max_ms_per_window=0" in preflight
    assert f"SEARCH_DIR={night.work_dir}/preflight/studies " in preflight
    assert "SEARCH_STORAGE= " in preflight
    assert rest == [f"-k {' '.join(MODEL_STAGES)} {suffix}", f"search {suffix}",
                    f"compare {suffix}", f"report {suffix}"]
    linked = night.work_dir / "preflight" / "bids" / "1-data"
    assert sorted(p.name for p in linked.iterdir()) == ["sub-A", "sub-B", "sub-C"]
    record = _record(night)
    assert record["state"] == "finished" and record["exit_code"] == 0
    assert record["outcome"].startswith("overnight 2026-01-02: ok, promoted hybrid")
    assert len(record["attempts"]) == 1 and record["attempts"][0]["exit_code"] == 0
    log = (night.work_dir / "night.log").read_text()
    assert "preflight: every job on a slice" in log and "exit code 0" in log
    assert json.loads((night.work_dir / "status" / "preflight.json").read_text())["status"] == "ok"


def test_a_rerun_skips_a_preflight_that_passed_and_fresh_starts_over(fake):
    make_night, calls = fake
    night = make_night()
    run_night(night)
    (night.work_dir / "leftover").write_text("from the first attempt")
    reusable = ("preflight", *MODEL_STAGES, "search", "compare")  # passed, or up to date
    first = {stage: records.read_stage(night.folder, stage) for stage in reusable}

    assert run_night(night) == EXIT_OK
    assert [c.split()[0] for c in calls()[5:]] == ["-k", "search", "compare", "report"]
    assert len(_record(night)["attempts"]) == 2
    for stage in reusable:
        status = records.read_stage(night.folder, stage)
        assert status.pop("reused") is True and status.pop("reused_at"), stage
        assert status == first[stage]  # when it really ran
    assert not records.read_stage(night.folder, "report").get("reused")

    assert run_night(make_night(fresh=True)) == EXIT_OK
    assert calls()[9].startswith("device") and not (night.work_dir / "leftover").exists()
    assert len(_record(night)["attempts"]) == 1


def test_a_failed_preflight_stops_the_night_and_still_reports(fake, monkeypatch):
    make_night, calls = fake
    monkeypatch.setenv("FAKE_FAIL", "preflight:train-hybrid")
    night = make_night()

    assert run_night(night) == EXIT_PREFLIGHT_FAILED
    assert [c.split()[0] for c in calls()] == ["device", "report"]
    record = _record(night)
    assert "preflight failed" in record["outcome"]
    assert any("train-hybrid failed" in line and "RuntimeError: train-hybrid broke" in line
               for line in record["details"])


def test_the_night_makes_the_models_its_config_names(fake):
    make_night, calls = fake
    night = make_night(settings=NightConfig(models=("hybrid", "baseline")))

    assert run_night(night) == EXIT_OK
    made = calls()
    assert made[0].startswith("device check-models windows train-baseline features "
                              "train-hybrid search compare report ")
    assert made[1].startswith("-k windows train-baseline features train-hybrid ")
    preflight_log = (night.work_dir / "logs" / "preflight.log").read_text()
    assert "models: hybrid: HybridCNN in lib/overnight/models/hybrid.py, reads eeg + " \
           "features, fitted by gradients, searched; baseline: BaselineCNN" in preflight_log


def test_a_model_file_the_catalog_cannot_read_fails_the_preflight_in_one_line(fake, tmp_path):
    make_night, calls = fake
    broken = tmp_path / "my_models" / "wide.py"
    broken.parent.mkdir()
    broken.write_text('from overnight.models.base import RTModel, register\n\n\n'
                      'NAME = "wide"\n\n\n@register(NAME)\nclass WideNet(RTModel):\n    pass\n')
    night = make_night(settings=NightConfig(extra_models=(str(broken.parent),)))

    assert run_night(night) == EXIT_PREFLIGHT_FAILED
    assert [c.split()[0] for c in calls()] == ["report"]  # no job ran
    status = json.loads((night.work_dir / "status" / "preflight.json").read_text())
    assert status["error"] == (f"ModelFileError: {broken}:7: @register(...) takes literals "
                               "only (strings, tuples, True/False): the catalog reads them "
                               "without running the file")


def test_a_failed_hybrid_still_compares_and_reports(fake, monkeypatch):
    make_night, calls = fake
    monkeypatch.setenv("FAKE_FAIL", "train-hybrid")
    night = make_night()

    assert run_night(night) == EXIT_STAGE_FAILED
    assert [c.split()[0] for c in calls()] == ["device", "-k", "search", "compare", "report"]
    assert "1 stage(s) failed" in _record(night)["outcome"]


def test_failed_features_are_not_made_again_for_the_search(fake, monkeypatch):
    make_night, calls = fake
    monkeypatch.setenv("FAKE_FAIL", "features")
    night = make_night()

    assert run_night(night) == EXIT_STAGE_FAILED
    assert [c.split()[0] for c in calls()] == ["device", "-k", "compare", "report"]
    assert "search: not run: its input features failed tonight" in \
        (night.work_dir / "night.log").read_text()


def test_make_failing_without_a_stage_failing_is_still_exit_1(fake, tmp_path):
    make_night, _ = fake
    script = tmp_path / "make_that_fails_on_compare.py"
    script.write_text(FAKE_MAKE.replace("if \"-q\" in args:", "if targets == ['compare']:\n"
                                        "    sys.exit(2)\nif \"-q\" in args:"))
    night = make_night(make=(sys.executable, str(script)))

    assert run_night(night) == EXIT_STAGE_FAILED
    assert "make compare failed before running a stage" in " ".join(_record(night)["details"])


def test_no_report_is_exit_3(fake, monkeypatch):
    make_night, _ = fake
    monkeypatch.setenv("FAKE_FAIL", "report")
    assert run_night(make_night()) == EXIT_NO_REPORT


def test_a_second_night_exits_75_while_the_lock_is_held(fake, capsys):
    make_night, calls = fake
    night = make_night()
    night.lock_path.parent.mkdir(parents=True)
    with open(night.lock_path, "w") as held:
        held.write("pid 4242, night 2026-01-02 in runs/2026-01-02, started 2026-01-02T21:30:00")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_night(night) == EXIT_LOCKED
    out = capsys.readouterr().out
    assert "another night is running (pid 4242" in out and "exit 75" in out
    assert calls() == [] and not night.work_dir.exists()
    assert run_night(night) == EXIT_OK  # released: the next start runs


def test_stages_left_running_by_a_killed_night_are_marked(fake):
    make_night, _ = fake
    night = make_night()
    (night.work_dir / "status").mkdir(parents=True)
    (night.work_dir / "status" / "features.json").write_text(json.dumps(
        {"stage": "features", "status": "running", "start": "2026-01-02T22:00:00"}))
    records.mark_interrupted(NightFolder(night.work_dir))

    status = json.loads((night.work_dir / "status" / "features.json").read_text())
    assert status["status"] == "interrupted" and "killed" in status["error"]


def test_notify_cmd_gets_the_outcome(fake, tmp_path):
    make_night, _ = fake
    out = tmp_path / "notified.txt"
    command = f'{{ echo "$OVERNIGHT_EXIT_CODE|$OVERNIGHT_OUTCOME"; cat; }} > {out}'

    assert run_night(make_night(notify_cmd=command)) == EXIT_OK
    first, *rest = out.read_text().splitlines()
    assert first.startswith("0|overnight 2026-01-02: ok")
    assert any(line.startswith("report: ") for line in rest)


def test_a_failing_notify_cmd_does_not_change_the_exit_code(fake, capsys):
    make_night, _ = fake
    assert run_night(make_night(notify_cmd="echo nope >&2; exit 9")) == EXIT_OK
    assert "NOTIFY_CMD failed (exit 9): nope" in capsys.readouterr().out


def test_dry_run_passes_n_and_writes_nothing(fake):
    make_night, calls = fake
    night = make_night()
    assert dry_run(night) == 0
    assert all(" -n " in f" {c} " for c in calls()) and len(calls()) == 5
    assert not night.work_dir.exists()


def test_fresh_never_deletes_the_checkout(fake, tmp_path, monkeypatch):
    make_night, _ = fake
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="holds the checkout"):
        run_night(make_night(work_dir=tmp_path, fresh=True))
    assert (tmp_path / "fake_make.py").exists()


def test_the_job_exits_with_the_night_s_code(fake, tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "night_job", Path(__file__).resolve().parents[2] / "jobs" / "night.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    monkeypatch.setenv("FAKE_FAIL", "train-baseline")
    monkeypatch.delenv("NOTIFY_CMD", raising=False)

    code = job.main(["--work", str(tmp_path / "night"), "--date", "2026-01-02",
                     "--lock", str(tmp_path / ".lock"), "--reports", str(tmp_path / "r"),
                     "--data", str(tmp_path / "data"), "--submission", str(tmp_path / "s"),
                     "--preflight-subjects", "2", "--preflight-max-subjects", "3",
                     "--runner", "local", "--gpu", "none",
                     "--image", "overnight:cpu",
                     "--make", f"{sys.executable} {tmp_path / 'fake_make.py'}"])
    assert code == EXIT_STAGE_FAILED
    assert os.path.exists(tmp_path / "night" / "night.json")


def test_half_written_files_of_a_killed_attempt_are_removed(fake, tmp_path):
    make_night, _ = fake
    night = make_night()
    (night.work_dir / "models" / "hybrid").mkdir(parents=True)
    partial = night.work_dir / "models" / "hybrid" / ".checkpoint.pt.k2j3.tmp"
    partial.write_bytes(b"half")
    kept = night.work_dir / "features.h5"
    kept.write_bytes(b"whole")
    data = night.data[0] / "sub-A"  # the preflight's slice links to the input data
    (data / ".not-ours.tmp").write_bytes(b"input")
    (night.work_dir / "preflight" / "bids" / "1-data").mkdir(parents=True)
    (night.work_dir / "preflight" / "bids" / "1-data" / "sub-A").symlink_to(data)

    assert run_night(night) == EXIT_OK
    assert not partial.exists() and kept.read_bytes() == b"whole"
    assert (data / ".not-ours.tmp").exists()
    assert "half-written by the interrupted attempt" in (night.work_dir / "night.log").read_text()


def test_make_status_reads_the_lock_line_the_driver_writes(fake):
    from overnight.night.driver import _night_lock
    from overnight.night.status import night_alive

    make_night, _ = fake
    night = make_night()
    with _night_lock(night) as holder:
        assert holder is None
        assert night_alive(night.lock_path, night.work_dir)
        assert not night_alive(night.lock_path, night.work_dir.parent / "2026-01-03")


def test_with_several_gpus_the_models_are_made_one_per_gpu_at_a_time(fake):
    make_night, calls = fake
    night = make_night(gpus=("0", "1", "2"))

    assert run_night(night) == EXIT_OK
    stages = next(c for c in calls() if c.startswith("-k"))
    assert stages.startswith(f"-k -j3 --output-sync=line {' '.join(MODEL_STAGES)} ")
    assert all("GPUS=0,1,2" in call for call in calls())


def test_containers_a_killed_night_left_are_removed_as_the_runner_removes_its_own(
        monkeypatch, capsys):
    from overnight.night import container, driver

    removed = []
    monkeypatch.setattr(container, "stale_containers", lambda engine, repo: ["abc", "def"])
    monkeypatch.setattr(container, "remove",
                        lambda engine, name: removed.append((engine, name)) or True)
    driver._stop_stale_containers("podman")
    assert removed == [("podman", "abc"), ("podman", "def")]
    assert "removing 2 container(s) left by a killed night: abc def" in capsys.readouterr().out
