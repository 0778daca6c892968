"""make data against a real S3 server (moto's, on localhost), reached as a user would reach
a mirror: through AWS_ENDPOINT_URL_S3, with unsigned requests.

The bucket holds a synthetic release in the challenge's key layout
(``NeurIPS25/R5_mini_L100_bdf/...``: three subjects' CCD runs as 100 Hz BDF with their
sidecars, plus another task's files that must be left alone), a release whose one
recording was uploaded in parts (a multipart ETag is no MD5), and a release with an
object that is not public. A TCP proxy in front of the server plays a slow or a breaking
network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from moto.server import ThreadedMotoServer

from overnight.config import DataConfig, SynthConfig, WindowsConfig
from overnight.hbn.download import (
    MANIFEST,
    DownloadError,
    RemoteFile,
    download_releases,
    select_files,
)
from overnight.hbn.releases import locate_release
from overnight.hbn.synth import generate_dataset

REPO = Path(__file__).resolve().parents[2]
BUCKET = "nmdatasets"
R5_MINI = locate_release("R5", mini=True)  # the synthetic release
R2_MINI = locate_release("R2", mini=True)  # one recording uploaded in parts
R3_MINI = locate_release("R3", mini=True)  # one object that is not public
# Another task's files beside the CCD ones, and a root file no task needs: left alone.
OTHER_FILES = ("sub-{s}/eeg/sub-{s}_task-RestingState_eeg.bdf",
               "sub-{s}/eeg/sub-{s}_task-RestingState_events.tsv", "README")
FAST = DataConfig(workers=4, retry_wait_s=0.1)
MULTIPART = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)


@dataclasses.dataclass(frozen=True)
class Bucket:
    """The S3 server and what it holds: every release's files by their local path."""

    url: str
    port: int
    files: dict[str, dict[str, bytes]]  # release folder -> local path -> bytes


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bucket]:
    """One moto S3 server for the session, holding the three releases."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    admin = boto3.client("s3", endpoint_url=url, region_name="us-east-2",
                         aws_access_key_id="test", aws_secret_access_key="test")
    admin.create_bucket(Bucket=BUCKET,
                        CreateBucketConfiguration={"LocationConstraint": "us-east-2"})
    files = {R5_MINI.folder: _synthetic_release(tmp_path_factory.mktemp("synth")),
             R2_MINI.folder: {"dataset_description.json": b"{}\n",
                              _ccd("sub-NDARMULTI", "eeg.bdf"): os.urandom(6 << 20)},
             R3_MINI.folder: {"participants.tsv": b"participant_id\n",
                              _ccd("sub-NDARPRIV", "events.tsv"): b"onset\n"}}
    for location in (R5_MINI, R2_MINI, R3_MINI):
        for path, data in files[location.folder].items():
            acl = "private" if "NDARPRIV" in path else "public-read"  # else 403 to anyone
            admin.upload_fileobj(io.BytesIO(data), BUCKET, location.prefix + path,
                                 ExtraArgs={"ACL": acl}, Config=MULTIPART)
    yield Bucket(url, port, files)
    server.stop()


def _ccd(subject: str, suffix: str) -> str:
    return f"{subject}/eeg/{subject}_task-contrastChangeDetection_run-1_{suffix}"


def _synthetic_release(root: Path) -> dict[str, bytes]:
    """Three subjects' CCD runs (100 Hz BDF, the challenge's copies) and their sidecars, and
    another task's files, by path."""
    generate_dataset(root, SynthConfig(n_subjects=3, runs_per_subject=1, trials_per_run=8,
                                       sfreq_hz=100.0, fmt="bdf", seed=3), progress=False)
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
             if p.is_file() and "derivatives" not in p.parts}
    subjects = sorted(p.name[4:] for p in root.glob("sub-*"))
    for name in OTHER_FILES:
        for subject in subjects:
            files[name.format(s=subject)] = f"not CCD: {name}".encode()
    return files


def _ccd_files(files: dict[str, bytes]) -> dict[str, bytes]:
    """The files make data fetches by default: CCD runs, sidecars, the two root files."""
    return {p: b for p, b in files.items()
            if "contrastChangeDetection" in p or p in ("participants.tsv",
                                                         "dataset_description.json")}


def _tree(folder: Path) -> dict[str, bytes]:
    """Every visible file below ``folder`` (the manifest, lock and temporary files are
    hidden)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}


@pytest.fixture()
def endpoint(s3: Bucket, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """The server, as a user points boto3 at a mirror."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.url)
    return s3


def test_a_release_arrives_byte_identical_with_only_its_ccd_files(endpoint: Bucket,
                                                                  tmp_path: Path) -> None:
    [summary] = download_releases([R5_MINI], tmp_path, FAST, progress=False)
    folder = tmp_path / "EEG2025r5mini"
    expected = _ccd_files(endpoint.files[R5_MINI.folder])
    assert len(expected) == 2 + 3 * 4  # the root files; per run .bdf, events, json, channels
    assert _tree(folder) == expected  # byte for byte, and nothing of RestingState or README
    assert summary == {"release": "R5 mini", "folder": str(folder), "listed": 21,
                       "selected": 14, "kept": 0, "fetched": 14,
                       "fetched_bytes": sum(map(len, expected.values()))}
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["complete"] and manifest["url"] == R5_MINI.url
    assert manifest["endpoint"] == endpoint.url
    entries = {e["path"]: e for e in manifest["files"]}
    assert set(entries) == set(expected)
    for path, entry in entries.items():
        assert entry["key"] == R5_MINI.prefix + path and entry["size"] == len(expected[path])
        assert entry["etag"] == entry["md5"]  # sent in one part: the ETag is the MD5
        assert entry["time"]
    assert not list(folder.rglob("*.tmp"))


def test_tasks_all_fetches_every_file(endpoint: Bucket, tmp_path: Path) -> None:
    download_releases([R5_MINI], tmp_path, FAST, tasks=["all"], progress=False)
    assert _tree(tmp_path / "EEG2025r5mini") == endpoint.files[R5_MINI.folder]


def test_a_rerun_fetches_nothing_and_a_damaged_file_again(endpoint: Bucket,
                                                          tmp_path: Path) -> None:
    download_releases([R5_MINI], tmp_path, FAST, progress=False)
    folder = tmp_path / "EEG2025r5mini"
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}

    [rerun] = download_releases([R5_MINI], tmp_path, FAST, progress=False)
    assert (rerun["kept"], rerun["fetched"], rerun["fetched_bytes"]) == (14, 0, 0)
    assert {p: p.stat().st_mtime_ns for p in stamps if p.name != MANIFEST} == {
        p: t for p, t in stamps.items() if p.name != MANIFEST}  # not one file rewritten

    recording = next(folder.rglob("*_eeg.bdf"))
    with open(recording, "r+b") as fh:  # truncated, as by a copy that stopped
        fh.truncate(recording.stat().st_size // 2)
    events = next(folder.rglob("*_events.tsv"))
    text = events.read_bytes()  # altered, same size: only the MD5 tells
    events.write_bytes(text.replace(b"smiley_face", b"sad_face!!!", 1))
    assert len(events.read_bytes()) == len(text) != events.read_bytes()
    (folder / "participants.tsv").unlink()

    [repair] = download_releases([R5_MINI], tmp_path, FAST, progress=False)
    assert (repair["kept"], repair["fetched"]) == (11, 3)
    assert _tree(folder) == _ccd_files(endpoint.files[R5_MINI.folder])


def test_a_multipart_object_is_checked_by_size_then_by_the_manifest(endpoint: Bucket,
                                                                    tmp_path: Path) -> None:
    [summary] = download_releases([R2_MINI], tmp_path, FAST, progress=False)
    folder = tmp_path / "EEG2025r2mini"
    assert summary["fetched"] == 2 and _tree(folder) == endpoint.files[R2_MINI.folder]
    entry = next(e for e in json.loads((folder / MANIFEST).read_text())["files"]
                 if e["path"].endswith(".bdf"))
    assert entry["etag"].endswith("-2") and len(entry["md5"]) == 32  # parts: no MD5 in it

    recording = folder / entry["path"]
    data = bytearray(recording.read_bytes())
    data[100:104] = b"\x00\xff\x00\xff" if data[100:104] != b"\x00\xff\x00\xff" else b"abcd"
    recording.write_bytes(data)  # same size: the manifest's MD5 finds it
    [repair] = download_releases([R2_MINI], tmp_path, FAST, progress=False)
    assert repair["fetched"] == 1 and _tree(folder) == endpoint.files[R2_MINI.folder]

    # Without a manifest (an eegdash cache) the size alone decides: the limit of an ETag
    # that is no MD5.
    recording.write_bytes(data)
    (folder / MANIFEST).unlink()
    [trusted] = download_releases([R2_MINI], tmp_path, FAST, progress=False)
    assert trusted["fetched"] == 0 and recording.read_bytes() == data


class _Proxy:
    """A TCP proxy in front of the server: the answers flow at ``rate`` bytes/s (a slow
    network), and the first ``cuts`` connections that carry more than ``cut_after`` bytes
    break there (the server closes each connection after one answer)."""

    def __init__(self, port: int, rate: float = 0.0, cuts: int = 0,
                 cut_after: int = 0) -> None:
        self._target = ("127.0.0.1", port)
        self._rate, self._cuts, self._cut_after = rate, cuts, cut_after
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self._target)
            for args in ((client, server, False), (server, client, True)):
                threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        sent = 0
        with contextlib.suppress(OSError):
            while data := source.recv(16384):
                if answers and sent + len(data) > self._cut_after and self._cut():
                    break
                sink.sendall(data)
                sent += len(data)
                if answers and self._rate:
                    time.sleep(len(data) / self._rate)
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def _cut(self) -> bool:
        with self._lock:
            self._cuts -= 1
            return self._cuts >= 0

    def close(self) -> None:
        self._listener.close()


def test_a_stream_cut_midway_is_fetched_again(s3: Bucket, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    proxy = _Proxy(s3.port, cuts=1, cut_after=300_000)  # a recording, 300 kB in
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    try:
        with caplog.at_level(logging.WARNING, "overnight"):
            download_releases([R5_MINI], tmp_path, dataclasses.replace(FAST, workers=1),
                              progress=False)
    finally:
        proxy.close()
    assert _tree(tmp_path / "EEG2025r5mini") == _ccd_files(s3.files[R5_MINI.folder])
    assert "attempt 2 of 4 in 0 s" in caplog.text


def test_a_stream_that_always_breaks_fails_its_file_alone(s3: Bucket, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    proxy = _Proxy(s3.port, cuts=100, cut_after=300_000)  # every recording, every time
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
    try:
        with pytest.raises(DownloadError, match=r"3 file\(s\) could not be fetched, the "
                                                r"first: .*_eeg\.bdf: .* \(2 attempts\); the "
                                                "other files are in place"):
            download_releases([R5_MINI], tmp_path, dataclasses.replace(
                FAST, file_attempts=2, retry_wait_s=0.0), progress=False)
    finally:
        proxy.close()
    expected = _ccd_files(s3.files[R5_MINI.folder])
    assert _tree(tmp_path / "EEG2025r5mini") == {
        path: data for path, data in expected.items() if not path.endswith(".bdf")}
    assert not list(tmp_path.rglob("*.tmp"))


def _half_written(folder: Path, least: int = 200_000) -> bool:
    """Whether a temporary file of at least `least` bytes is in flight (one may land meanwhile)."""
    for part in folder.rglob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if part.stat().st_size >= least:
                return True
    return False


def test_a_killed_download_leaves_nothing_that_looks_whole_and_goes_on(
        s3: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = _Proxy(s3.port, rate=2e6)  # 2 MB/s: a recording takes about a second
    folder = tmp_path / "EEG2025r5mini"
    job = subprocess.Popen([sys.executable, "jobs/download.py", "--releases", "R5", "--mini",
                            "--out", str(tmp_path), "--set", "data.workers=1"], cwd=REPO,
                           env={**os.environ, "AWS_ENDPOINT_URL_S3": proxy.url},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and job.poll() is None:
            if _half_written(folder) and _tree(folder):
                break  # some files are whole, a recording is half-way
            time.sleep(0.01)
        assert job.poll() is None, job.stderr.read() if job.stderr else ""
        job.send_signal(signal.SIGKILL)
        job.wait()
    finally:
        proxy.close()
    expected = _ccd_files(s3.files[R5_MINI.folder])
    landed = _tree(folder)
    assert landed and len(landed) < len(expected)
    assert all(expected[path] == data for path, data in landed.items())  # whole, or absent
    assert list(folder.rglob(".*.tmp"))  # what was in flight is hidden and named .tmp

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.url)
    [rerun] = download_releases([R5_MINI], tmp_path, FAST, progress=False)
    assert rerun["kept"] == len(landed) and rerun["fetched"] == len(expected) - len(landed)
    assert _tree(folder) == expected and not list(folder.rglob("*.tmp"))


def test_an_unreachable_bucket_fails_in_seconds_with_one_line(s3: Bucket,
                                                              tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        closed_port = taken.getsockname()[1]  # nothing listens once it is closed
    url = f"http://127.0.0.1:{closed_port}"
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "jobs/download.py", "--releases", "R5", "--mini",
                           "--out", str(tmp_path / "data")], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "AWS_ENDPOINT_URL_S3": url},
                          timeout=60)
    seconds = time.monotonic() - t0
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(errors) == 1 and f"cannot reach s3://nmdatasets at {url}" in errors[0]
    assert seconds < 15, seconds  # the job's start included
    assert not (tmp_path / "data").exists()  # nothing written


def test_a_server_that_does_not_answer_fails_in_seconds(endpoint: Bucket, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3",
                           f"http://127.0.0.1:{silent.getsockname()[1]}")
        cfg = dataclasses.replace(FAST, probe_read_timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(DownloadError, match=r"cannot reach s3://nmdatasets at .*Read "
                                                "timeout"):
            download_releases([R5_MINI], tmp_path, cfg, progress=False)
    assert time.monotonic() - t0 < 5  # 2 attempts of 0.5 s and botocore's backoff


def test_a_release_not_in_the_bucket_and_an_unknown_one_are_named(endpoint: Bucket,
                                                                  tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"R4 mini is not at s3://nmdatasets/NeurIPS25/"
                                            r"R4_mini_L100_bdf/ \(http://127.0.0.1:\d+\): the "
                                            "listing is empty"):
        download_releases([locate_release("R4", mini=True)], tmp_path, FAST, progress=False)
    with pytest.raises(DownloadError, match="holds 21 files, none of task"):
        download_releases([R5_MINI], tmp_path, FAST, tasks=["symbolSearch"], progress=False)
    assert _job().main(["--releases", "R12", "--out", str(tmp_path)]) == 1  # one line
    assert not list(tmp_path.iterdir())


def _job() -> Any:
    """jobs/download.py as a module."""
    spec = importlib.util.spec_from_file_location("download_job", REPO / "jobs" / "download.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_object_that_is_not_public_fails_alone(endpoint: Bucket, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"1 file\(s\) could not be fetched, the first: "
                                            r".*NDARPRIV.*: 403 \(anonymous access is "
                                            r"refused"):
        download_releases([R3_MINI], tmp_path, FAST, progress=False)
    folder = tmp_path / "EEG2025r3mini"
    assert _tree(folder) == {"participants.tsv": b"participant_id\n"}  # the other is kept
    manifest = json.loads((folder / MANIFEST).read_text())
    assert not manifest["complete"] and manifest["missing"] == 1


def test_short_free_space_refuses_before_fetching(endpoint: Bucket, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: real(path)._replace(free=1_000_000))
    with pytest.raises(DownloadError, match=r"not enough free space in .*: the files still "
                                            r"to fetch need 7\.9 MB and 1\.0 MB is free"):
        download_releases([R5_MINI], tmp_path, FAST, progress=False)
    assert not (tmp_path / "EEG2025r5mini").exists()


def test_make_data_gives_a_tree_the_window_stage_reads(endpoint: Bucket,
                                                      tmp_path: Path) -> None:
    from overnight.windows.build import build_window_cache

    done = subprocess.run(["make", "--no-print-directory", "data", "RELEASES=R5", "MINI=1",
                           f"DATA_DIR={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert f'DATA="{tmp_path}/EEG2025r5mini"' in done.stderr
    summary = build_window_cache(tmp_path / "EEG2025r5mini", tmp_path / "windows.h5",
                                 WindowsConfig(workers=1), progress=False)
    assert (summary["n_recordings"], summary["n_skipped"]) == (3, 0)
    assert summary["n_windows"] > 0


def test_select_files_keeps_the_task_with_its_sidecars() -> None:
    paths = ["participants.tsv", "dataset_description.json", "README", "participants.json",
             "task-contrastChangeDetection_eeg.json", "sub-A/eeg/sub-A_task-contrast"
             "ChangeDetection_run-1_eeg.set", "sub-A/eeg/sub-A_task-contrastChangeDetection"
             "_run-1_eeg.fdt", "sub-A/eeg/sub-A_task-RestingState_eeg.set",
             "sub-A/participants.tsv"]
    files = [RemoteFile(f"p/{path}", path, 1, "x") for path in paths]
    assert [f.path for f in select_files(files, ["contrastChangeDetection"])] == [
        "participants.tsv", "dataset_description.json", paths[4], paths[5], paths[6]]
    assert select_files(files, ["all"]) == files
    with pytest.raises(ValueError, match=r"tasks=\['all', 'RestingState'\]: expected task "
                                         "names"):
        select_files(files, ["all", "RestingState"])
    with pytest.raises(TypeError, match="expected a sequence of task names"):
        select_files(files, "all")
