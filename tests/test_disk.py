"""A full disk: every write keeps the file it replaces and says what it needed; the night
checks the space before its long stages."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from overnight import atomic
from overnight.champion.compare import compare_and_promote
from overnight.champion.record import read_champion, verify_files
from overnight.config import CompareConfig
from overnight.layout import NightFolder
from overnight.night import disk

REPO = Path(__file__).resolve().parents[1]


def _limited(limit_bytes: int):
    """preexec_fn: files this process writes may not grow past ``limit_bytes``
    (RLIMIT_FSIZE: writes past it fail with EFBIG, as on a full disk)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))


def test_a_write_that_does_not_fit_keeps_the_old_file_and_says_why(tmp_path):
    target = tmp_path / "cache.bin"
    target.write_bytes(b"the old cache")
    script = ("import sys; from overnight import atomic; "
              "atomic.write_bytes(sys.argv[1], b'x' * 3_000_000)")
    proc = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True,
                          text=True, preexec_fn=_limited(1_000_000), check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"overnight.atomic.DiskFullError: [Errno 27] cannot write {target}")
    assert "needs more than 1.0 MB" in last and "is free on the file system" in last
    assert target.read_bytes() == b"the old cache"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.bin"]  # no partial file


def test_a_full_disk_during_the_window_cache_keeps_the_old_cache(tiny_data, tmp_path):
    out = tmp_path / "windows.h5"
    shutil.copyfile(tiny_data.windows, out)
    before = atomic.sha256_file(out)
    proc = subprocess.run(
        [sys.executable, "jobs/windows.py", "--bids-root", str(tiny_data.bids_root), "--out",
         str(out), "--split-out", str(tmp_path / "split.json"), "--set", "windows.workers=1"],
        cwd=REPO, capture_output=True, text=True, preexec_fn=_limited(2_000_000), check=False)
    assert proc.returncode != 0
    assert f"DiskFullError: [Errno 27] cannot write {out}" in proc.stderr
    assert atomic.sha256_file(out) == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_during_the_install_leaves_the_champion_whole(tiny_night, tmp_path):
    submission = tmp_path / "submission"
    compare_and_promote(tiny_night.models, tiny_night.windows, tiny_night.split, submission,
                        tmp_path / "first.json", CompareConfig(max_ms_per_window=0.0))
    champion = read_champion(submission)
    before = {p.name: p.read_bytes() for p in submission.iterdir()}
    # rollback installs the other model through the same install as a promotion
    script = ("import sys; from pathlib import Path; from overnight.champion.compare import "
              "rollback; rollback(*map(Path, sys.argv[1:]))")
    other = "hybrid" if champion["model"] == "baseline" else "baseline"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tiny_night.models / other), str(tiny_night.windows),
         str(tiny_night.split), str(submission)],
        capture_output=True, text=True, preexec_fn=_limited(20_000), check=False)
    assert proc.returncode == 1
    assert "DiskFullError" in proc.stderr and "is free on the file system" in proc.stderr
    assert {p.name: p.read_bytes() for p in submission.iterdir()} == before
    assert verify_files(submission, read_champion(submission)) is None


Usage = namedtuple("Usage", "total used free")


def test_the_night_needs_scale_with_the_subjects(tiny_data, tmp_path):
    pre = NightFolder(tmp_path / "preflight")
    pre.root.mkdir()
    shutil.copyfile(tiny_data.windows, pre.windows)
    shutil.copyfile(tiny_data.features, pre.features)
    split = json.loads(tiny_data.split.read_text())
    shutil.copyfile(tiny_data.split, pre.split)
    per_subject = (pre.windows.stat().st_size + pre.features.stat().st_size) / (
        len(split["train"]) + len(split["val"]))
    small, large = disk.night_needs(pre, 10), disk.night_needs(pre, 1000)
    assert abs(large["work"] - small["work"] - disk.MARGIN * 990 * per_subject) < 2


def test_short_space_names_the_file_system_and_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: Usage(10**12, 0, 3 * 10**9))
    folders = {"work": tmp_path / "runs" / "2026-01-02", "reports": tmp_path / "reports",
               "submission": tmp_path / "submission"}
    assert disk.shortfalls({"work": 10**9, "reports": 10**8, "submission": 10**8},
                           folders) == []
    (line,) = disk.shortfalls({"work": 4 * 10**9, "reports": 10**8, "submission": 10**8},
                              folders)
    # one file system: the three needs add up
    assert line == (f"the night will write about 4.2 GB to the file system of {tmp_path} "
                    f"(work {folders['work']}, reports {folders['reports']}, submission "
                    f"{folders['submission']}), and 3.0 GB is free there")


def test_the_disk_stage_stops_the_night_with_what_is_short(tiny_data, tmp_path, monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_disk", REPO / "jobs" / "check_disk.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    pre = NightFolder(tmp_path / "runs" / "2026-01-02" / "preflight")
    pre.root.mkdir(parents=True)
    for source, target in ((tiny_data.windows, pre.windows), (tiny_data.split, pre.split)):
        shutil.copyfile(source, target)
    argv = ["--preflight", str(pre.root), "--data", str(tiny_data.bids_root), "--work",
            str(pre.root.parent), "--reports", str(tmp_path / "reports"), "--submission",
            str(tmp_path / "submission")]
    assert job.main(argv) == 0
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: Usage(10**12, 0, 10**6))
    with pytest.raises(SystemExit) as stop:
        job.main(argv)
    message = str(stop.value.code)
    assert message.startswith("not enough disk space: the night will write about")
    assert "1.0 MB is free there" in message and "point RUNS, REPORTS or SUBMISSION" in message
