"""The images for real (make test-image): build the CPU image with Podman, with no registry
(a Debian base from mmdebstrap), and run the demo's whole night in it with RUNNER=podman and
with RUNNER=docker through Podman's Docker-compatible socket. Each must give the windows
and the comparison of RUNNER=local, write only files that belong to the caller, and find
the checkout read-only; a job deaf to SIGTERM is gone when its stage's limit passes, and
the preflight's engine check names each fault in one line.

Slow (about 15 minutes on 2 cores, up to 7 GB of disk): marked ``slow`` and ``image``, left out
of make test and make test-all. It removes the images it built.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import pwd
import re
import resource
import shutil
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from overnight.layout import NightFolder
from overnight.night import container
from overnight.night.runner import TIMED_OUT_EXIT, TimeLimit, run_stage

pytestmark = [pytest.mark.slow, pytest.mark.image]

REPO = Path(__file__).resolve().parents[2]
DATE = "2026-01-05"
BASE = "localhost/overnight-test-base:bookworm"
PYTHON_BASE = "localhost/overnight-test-python:bookworm"
IMAGE = "localhost/overnight-test:cpu"
DEBIAN_PYTHON_TAG = "cp311"  # bookworm's python3, which the image's torch wheel is built for
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu/torch/"
NPROC_CAP = 32768  # runc could not set a container's nproc to this VM's hard limit (96362)
SERVICE_CPU_SHARE = 0.2  # of one core: enough to answer the client, too little to starve a job


def _say(text: str) -> None:
    print(f"[test-image] {text}", flush=True)


def _run(command: list[str], timeout: float = 1200, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          check=False, **kwargs)
    assert proc.returncode == 0, (f"{' '.join(command)} exited {proc.returncode}\n"
                                  f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _containers_conf() -> str:
    """Podman's settings for this test: ulimits within the caller's hard limits (Podman's
    defaults ask for more, which a VM refuses), and runc where it is installed (crun refuses
    a hybrid cgroup layout)."""
    def cap(limit: int, most: int) -> int:
        return most if limit == resource.RLIM_INFINITY else min(limit, most)

    nofile = cap(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1048576)
    nproc = cap(resource.getrlimit(resource.RLIMIT_NPROC)[1], NPROC_CAP)
    text = (f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", '
            f'"nproc={nproc}:{nproc}"]\n')
    return text + ('[engine]\nruntime = "runc"\n' if shutil.which("runc") else "")


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Iterator[Path]:
    """Podman ready to run, with the test's containers.conf unless CONTAINERS_CONF is set;
    yields the module's scratch folder."""
    for tool in ("podman", "mmdebstrap"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found: make test-image installs it (as root, on Debian)")
    scratch = tmp_path_factory.mktemp("image")
    # pytest makes its folders the caller's alone; the rootless test's user and nobody
    # read containers.conf and the image archive here
    for folder in (tmp_path_factory.getbasetemp(), scratch):
        folder.chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        if "CONTAINERS_CONF" not in os.environ:
            conf = scratch / "containers.conf"
            conf.write_text(_containers_conf())
            patch.setenv("CONTAINERS_CONF", str(conf))
        _run(["podman", "info", "--format", "{{.Host.Arch}}"], timeout=60)
        yield scratch


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=10).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _torch_index(scratch: Path) -> Iterator[str | None]:
    """None when PyTorch's CPU index answers (the Dockerfile's default); otherwise the URL of
    a local index serving the pinned CPU wheel from TORCH_WHEELS or pip's find-links."""
    if _answers(TORCH_CPU_INDEX):
        yield None
        return
    pin = re.search(r"^torch==(\S+)$", (REPO / "requirements.txt").read_text(), re.M)[1]
    folders = os.environ.get("TORCH_WHEELS") or subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.find-links"],
        capture_output=True, text=True, check=False).stdout
    wheels = [wheel for folder in folders.split() for wheel in
              Path(folder).glob(f"torch-{pin}*-{DEBIAN_PYTHON_TAG}-*x86_64.whl")]
    if not wheels:
        pytest.skip(f"{TORCH_CPU_INDEX} does not answer and no torch {pin} wheel for "
                    f"{DEBIAN_PYTHON_TAG} is in TORCH_WHEELS or pip's find-links")
    index = scratch / "torch-index"
    (index / "torch").mkdir(parents=True, exist_ok=True)
    link = index / "torch" / wheels[0].name
    if not link.exists():
        link.symlink_to(wheels[0])

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(index)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def _image_size_gb(tag: str) -> float:
    size = _run(["podman", "image", "inspect", "--format", "{{.Size}}", tag], timeout=60)
    return int(size.stdout.strip()) / 1e9


@pytest.fixture(scope="module")
def image(engine: Path) -> Iterator[str]:
    """The CPU image, built on a Debian base made with no registry; removed afterwards."""
    started = time.monotonic()
    try:
        _run(["sh", "docker/debian-base.sh", "podman"],
             env={**os.environ, "DEBIAN_BASE_IMAGE": BASE, "DEBIAN_PYTHON_IMAGE": PYTHON_BASE})
        with _torch_index(engine) as index:
            local = [f"TORCH_INDEX={index}", "IMAGE_BUILD_FLAGS=--network=host"] if index else []
            _run(["make", "--no-print-directory", "image", "ENGINE=podman", f"IMAGE={IMAGE}",
                  f"BASE_IMAGE={PYTHON_BASE}", *local])
        _say(f"base and CPU image built in {time.monotonic() - started:.0f} s, "
             f"{_image_size_gb(IMAGE):.2f} GB (torch from {index or TORCH_CPU_INDEX})")
        yield IMAGE
    finally:
        subprocess.run(["podman", "rmi", "--force", IMAGE, PYTHON_BASE, BASE],
                       capture_output=True, check=False)


@pytest.fixture(scope="module")
def docker_socket(engine: Path) -> Iterator[str]:
    """DOCKER_HOST for Podman's Docker-compatible API, served for the module."""
    if shutil.which("docker") is None:
        pytest.skip("no docker client: the RUNNER=docker night through Podman's socket "
                    "needs one")
    socket = engine / "podman.sock"
    # stdin from /dev/null: podman 4.3's service, left reading the test's stdin, spins a core
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{socket}"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    group = _cap_cpu(service.pid, f"overnight-test-{service.pid}")
    host = f"unix://{socket}"
    try:
        for _ in range(100):
            if subprocess.run(["docker", "info"], env={**os.environ, "DOCKER_HOST": host},
                              capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.2)
        yield host
    finally:
        service.terminate()
        service.wait(timeout=30)
        if group is not None:
            group.rmdir()


def _cap_cpu(pid: int, name: str) -> Path | None:
    """Podman before 4.5 answers a container's wait by polling its exit in a tight loop
    (containers/podman#18150): one core busy while each job runs, which on 2 cores starved
    the job's threads (a training epoch 12x slower). Caps the process at SERVICE_CPU_SHARE of
    a core in a cgroup of its own (v2 or v1); that cgroup's folder, or None where cgroups
    cannot be written (the night is then only slower)."""
    period_us = 100_000
    quota_us = int(period_us * SERVICE_CPU_SHARE)
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():  # the unified hierarchy
        group, limit = Path("/sys/fs/cgroup") / name, ("cpu.max", f"{quota_us} {period_us}")
    else:
        group, limit = Path("/sys/fs/cgroup/cpu") / name, ("cpu.cfs_quota_us", str(quota_us))
    try:
        group.mkdir(exist_ok=True)
        (group / limit[0]).write_text(limit[1])
        (group / "cgroup.procs").write_text(str(pid))
    except OSError as error:
        _say(f"Podman's service left uncapped ({error}): the RUNNER=docker night runs slower")
        return None
    return group


def _demo(runner: str, root: Path, synthetic: Path, env: dict[str, str] | None = None) -> Path:
    """``make demo`` with RUNNER=runner, every output under ``root``; the night folder."""
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    _run(["make", "--no-print-directory", "demo", f"RUNNER={runner}", f"IMAGE={IMAGE}",
          f"SYNTH_DATA={synthetic}", f"DEMO_WORK={root / 'night'}",
          f"DEMO_SEARCH_DIR={root / 'search'}", f"REPORTS={root / 'reports'}",
          f"SUBMISSION={root / 'submission'}", f"RUNS={root / 'runs'}",
          f"LOCK={root / 'runs' / '.lock'}", f"DATE={DATE}"],
         timeout=1800, env={**os.environ, **(env or {})})
    _say(f"make demo RUNNER={runner}: {time.monotonic() - started:.0f} s")
    return root / "night"


@pytest.fixture(scope="module")
def local_night(engine: Path) -> Path:
    return _demo("local", engine / "local", engine / "synthetic")


def _window_digest(night: Path) -> dict[str, str]:
    """A digest of every dataset in the night's window cache."""
    digests = {}
    with h5py.File(night / "windows.h5", "r") as cache:
        def visit(name: str, item: object) -> None:
            if isinstance(item, h5py.Dataset):
                values = np.asarray(item[()])
                data = (repr(values.tolist()).encode() if values.dtype.kind == "O"  # strings
                        else np.ascontiguousarray(values).tobytes())
                digests[name] = hashlib.sha256(data).hexdigest()
        cache.visititems(visit)
    return digests


def _scores(night: Path) -> dict[str, tuple[float, float]]:
    """Each comparison row's tune (None for the references) and validation NRMSE."""
    rows = json.loads((night / "comparison.json").read_text())["rows"]
    return {row["name"]: (row.get("tune_nrmse"), row["nrmse"]) for row in rows}


def _check_like_local(night: Path, local: Path, root: Path, runner: str) -> None:
    assert _window_digest(night) == _window_digest(local)
    container_scores, local_scores = _scores(night), _scores(local)
    assert container_scores.keys() == local_scores.keys()
    for name, scores in container_scores.items():
        assert scores == pytest.approx(local_scores[name], abs=1e-6), name
    decision = json.loads((night / "comparison.json").read_text())["decision"]
    assert decision == json.loads((local / "comparison.json").read_text())["decision"]
    assert (root / "reports" / "latest.html").is_file()
    assert (root / "submission" / "submission.py").is_file()
    assert list((root / "submission").glob("weights_*.pt"))
    others = [path for path in root.rglob("*") if path.lstat().st_uid != os.getuid()]
    assert not others, f"{runner}: files not the caller's: {others[:5]}"


def _read_only_probe(engine_name: str, root: Path) -> str:
    """A job that writes into the checkout, run as the night runs a stage: the write must
    fail (the checkout is mounted read-only) and the stage with it (the engine passes the
    job's exit code on); the stage's log."""
    folder = NightFolder(root / "probe")
    prefix = container.container_prefix(engine_name, "none", IMAGE, REPO)
    code = run_stage("probe", [*prefix, "-c", "open('read-only-probe', 'w')"], folder)
    assert code == 1, f"{engine_name}: the failed job's stage exited {code}"
    assert not (REPO / "read-only-probe").exists()
    return folder.log("probe").read_text()


def test_podman_night_matches_the_local_one(engine, image, local_night):
    root = engine / "podman"
    night = _demo("podman", root, engine / "synthetic")
    _check_like_local(night, local_night, root, "podman")
    assert "Read-only file system" in _read_only_probe("podman", root)


def test_docker_night_through_podmans_socket_matches_the_local_one(engine, image, local_night,
                                                                   docker_socket, monkeypatch):
    root = engine / "docker"
    night = _demo("docker", root, engine / "synthetic", {"DOCKER_HOST": docker_socket})
    _check_like_local(night, local_night, root, "docker")
    monkeypatch.setenv("DOCKER_HOST", docker_socket)
    # Podman 4.3's socket answers 0 for a failed --rm container: the runner runs without
    assert "Read-only file system" in _read_only_probe("docker", root)


DEAF = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring SIGTERM', flush=True); time.sleep(600)")


@pytest.mark.parametrize("engine_name", container.ENGINES)
def test_a_sigterm_deaf_container_is_gone_when_its_limit_passes(engine, image, engine_name,
                                                                request, monkeypatch):
    if engine_name == "docker":
        monkeypatch.setenv("DOCKER_HOST", request.getfixturevalue("docker_socket"))
    folder = NightFolder(engine / f"deaf-{engine_name}")
    prefix = container.container_prefix(engine_name, "none", image, REPO)
    started = time.monotonic()
    code = run_stage("train-baseline", [*prefix, "-c", DEAF], folder,
                     limit=TimeLimit(8.0, grace_s=3.0))
    took = time.monotonic() - started
    assert code == TIMED_OUT_EXIT
    log = folder.log("train-baseline").read_text()
    assert "ignoring SIGTERM" in log
    (name,) = re.findall(r"removed container (overnight-train-baseline-\w+)", log)
    listed = _run([engine_name, "ps", "--all", "--quiet", "--filter", f"name={name}"],
                  timeout=60)
    assert listed.stdout.strip() == ""
    assert took < 60, f"{engine_name}: the stage took {took:.0f} s to end"
    _say(f"deaf container under {engine_name}: stopped and removed {took:.0f} s after start")


def test_the_engine_check_names_each_fault_in_one_line(engine, image, docker_socket):
    assert container.check_engine("podman", image, "none") is None
    missing = container.check_engine("podman", "localhost/overnight-test:absent", "none")
    assert "make image ENGINE=podman" in missing
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", docker_socket)
        assert container.check_engine("docker", image, "none") is None
        patch.setenv("DOCKER_HOST", f"unix://{engine / 'stopped.sock'}")
        stopped = container.check_engine("docker", image, "none")
    assert "cannot reach the Docker daemon" in stopped and "systemctl" in stopped
    problems = [missing, stopped]
    if os.getuid() == 0 and shutil.which("runuser"):
        # the socket is root's alone: another user gets "permission denied"
        def as_nobody(command: list[str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["runuser", "-u", "nobody", "--", "env",
                                   f"DOCKER_HOST={docker_socket}", *command],
                                  capture_output=True, text=True, timeout=60, check=False)
        denied = container.check_engine("docker", image, "none", run=as_nobody)
        assert "may not use the Docker daemon" in denied
        # rootless Podman as a user with no home: nowhere to keep its images
        homeless = container.check_engine("podman", image, "none", run=lambda command: (
            subprocess.run(["runuser", "-u", "nobody", "--", *command], cwd="/",
                           capture_output=True, text=True, timeout=60, check=False)))
        assert "user who has one" in homeless
        problems += [denied, homeless]
    for problem in problems:
        assert "\n" not in problem
        _say(f"preflight: {problem}")


ROOTLESS_USER = "overnight-rootless-test"


@pytest.fixture(scope="module")
def rootless_user(image: str, engine: Path) -> Iterator[tuple[str, int, int]]:
    """A user of their own for rootless Podman (root creates them, with subordinate ids,
    and removes them), holding the Python base in their own image storage."""
    if os.getuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("root creates the rootless test's user")
    _remove_rootless_user()  # one a stopped run left
    _run(["useradd", "--create-home", "--add-subids-for-system", "--system",
          "--shell", "/bin/sh", ROOTLESS_USER], timeout=60)
    try:
        archive = engine / "python-base.tar"
        _run(["podman", "save", "--output", str(archive), PYTHON_BASE], timeout=300)
        archive.chmod(0o644)
        _as_user(["podman", "load", "--input", str(archive)])
        user = pwd.getpwnam(ROOTLESS_USER)
        yield ROOTLESS_USER, user.pw_uid, user.pw_gid
    finally:
        _remove_rootless_user()


def _remove_rootless_user() -> None:
    """userdel refuses a user with processes: rootless Podman leaves its pause process."""
    subprocess.run(["pkill", "--signal", "KILL", "--uid", ROOTLESS_USER], capture_output=True,
                   check=False)
    time.sleep(0.5)
    subprocess.run(["userdel", "--remove", ROOTLESS_USER], capture_output=True, check=False)


def _as_user(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    conf = os.environ.get("CONTAINERS_CONF")
    return _run(["runuser", "-u", ROOTLESS_USER, "--", "env",
                 *([f"CONTAINERS_CONF={conf}"] if conf else []), *command], **kwargs)


def test_rootless_podman_writes_files_that_belong_to_the_caller(engine, rootless_user):
    _, uid, gid = rootless_user
    out = engine / "rootless-out"
    out.mkdir(exist_ok=True)
    os.chown(out, uid, gid)
    prefix = container.container_prefix("podman", "none", PYTHON_BASE, REPO,
                                        read_write=[out], user=(uid, gid), rootless=True)
    if not os.stat("/dev/net/tun").st_mode & stat.S_IWOTH:
        # rootless networking (slirp4netns) opens /dev/net/tun, which some VMs keep root's
        # alone (Debian's is 0666); the job needs no network
        prefix = [*prefix[:2], "--network=none", *prefix[2:]]
    _as_user([*prefix, "-c", f"import os; open({str(out / 'made')!r}, 'w').write("
              "str(os.getuid()))"], timeout=300)
    made = out / "made"
    assert (made.stat().st_uid, made.stat().st_gid) == (uid, gid)
    assert made.read_text() == str(uid)  # inside, the job ran as the caller's own uid
