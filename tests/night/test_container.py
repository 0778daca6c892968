"""The container runner's command line for each engine and GPU kind, its checks, and
`make -n` with it."""

from __future__ import annotations

import importlib.util
import itertools
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from overnight.night import container
from overnight.night.container import (
    check_engine,
    container_prefix,
    image_name,
    remove,
    stale_containers,
    with_name,
)

REPO = Path(__file__).resolve().parents[2]
AMD_FLAGS = ["--device=/dev/kfd", "--device=/dev/dri", "--ipc=host", "--shm-size=16g"]
PASSTHROUGH = ("HSA_OVERRIDE_GFX_VERSION", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
               "CUDA_VISIBLE_DEVICES")


def _prefix(gpu: str, engine: str = "docker", rootless: bool | None = None) -> list[str]:
    return container_prefix(engine, gpu, image_name(gpu), "/srv/overnight", ["/data/hbn"],
                            ["runs/2026-01-02", "reports", "submission"], user=(1234, 567),
                            render_gid=109, rootless=rootless)


def _pairs(words: list[str], flag: str) -> list[str]:
    return [value for word, value in itertools.pairwise(words) if word == flag]


@pytest.mark.parametrize(("engine", "gpu"), list(itertools.product(container.ENGINES,
                                                                   ["amd", "nvidia", "none"])))
def test_every_kind_runs_as_the_caller_with_the_same_mounts(engine, gpu):
    words = _prefix(gpu, engine)

    assert words[:3] == [engine, "run", "--rm"]
    assert words[-2:] == [f"overnight:{container.IMAGE_FLAVOURS[gpu]}", "python"]
    assert _pairs(words, "--user") == ["1234:567"]
    mounts = _pairs(words, "--mount")
    assert "type=bind,source=/data/hbn,target=/data/hbn,readonly" in mounts
    assert "type=bind,source=/srv/overnight,target=/srv/overnight,readonly" in mounts
    for rw in ("runs/2026-01-02", "reports", "submission", ".numba_cache"):
        path = f"/srv/overnight/{rw}"
        assert f"type=bind,source={path},target={path}" in mounts  # read-write
    assert _pairs(words, "--workdir") == ["/srv/overnight"]
    env = _pairs(words, "--env")
    assert "PYTHONPATH=/srv/overnight/lib" in env
    assert "NUMBA_CACHE_DIR=/srv/overnight/.numba_cache" in env


def test_amd_gets_devices_groups_ipc_shm_and_seccomp():
    words = _prefix("amd")
    for flag in AMD_FLAGS:
        assert flag in words
    assert _pairs(words, "--group-add") == ["video", "109"]
    assert _pairs(words, "--security-opt") == ["seccomp=unconfined"]
    assert "--gpus" not in words


def test_nvidia_gets_all_gpus_and_none_gets_no_device():
    nvidia = _prefix("nvidia")
    assert _pairs(nvidia, "--gpus") == ["all"]
    assert not set(AMD_FLAGS) - {"--ipc=host"} & set(nvidia)  # DDP's NCCL needs the host IPC
    cpu = _prefix("none")
    assert "--gpus" not in cpu and not set(AMD_FLAGS) & set(cpu)
    assert "--group-add" not in cpu


def test_podman_gets_cdi_for_nvidia_and_keeps_the_callers_ids_when_rootless():
    nvidia = _prefix("nvidia", "podman", rootless=False)
    assert _pairs(nvidia, "--device") == ["nvidia.com/gpu=all"] and "--gpus" not in nvidia
    assert "--ipc=host" in nvidia
    # no SELinux relabelling of the user's checkout and data
    assert _pairs(nvidia, "--security-opt") == ["label=disable"]
    assert not any(word.startswith("--userns") for word in nvidia)  # rootful: as docker
    amd = _prefix("amd", "podman", rootless=False)
    assert _pairs(amd, "--group-add") == ["video", "109"]
    assert _pairs(amd, "--security-opt") == ["seccomp=unconfined", "label=disable"]

    rootless = _prefix("amd", "podman", rootless=True)
    for flag in AMD_FLAGS:
        assert flag in rootless
    # the container has no video or render gid of the host's: keep the caller's groups
    assert _pairs(rootless, "--group-add") == ["keep-groups"]
    assert "--userns=keep-id" in rootless  # files it writes belong to the caller
    assert "--userns=keep-id" in _prefix("none", "podman", rootless=True)
    assert "--userns=keep-id" not in _prefix("none", "docker", rootless=True)


def test_device_variables_pass_through_by_name():
    # the name alone: docker copies the caller's value at run time when it is set, so no
    # value is baked into the Makefile's command (nor shown by make -n)
    amd = _pairs(_prefix("amd"), "--env")
    assert set(PASSTHROUGH) <= set(amd)
    nvidia = _pairs(_prefix("nvidia"), "--env")
    assert "CUDA_VISIBLE_DEVICES" in nvidia and "HSA_OVERRIDE_GFX_VERSION" not in nvidia
    assert not set(PASSTHROUGH) & set(_pairs(_prefix("none"), "--env"))


def test_a_path_both_read_only_and_read_write_is_mounted_once_read_write(tmp_path):
    words = container_prefix("docker", "none", "img", tmp_path, ["data"], ["data"], user=(1, 1))
    mounts = [m for m in _pairs(words, "--mount") if f"source={tmp_path / 'data'}," in m]
    assert mounts == [f"type=bind,source={tmp_path / 'data'},target={tmp_path / 'data'}"]


def test_bad_arguments_name_what_is_allowed():
    with pytest.raises(ValueError, match="GPU='intel': expected one of amd, nvidia, none"):
        container_prefix("docker", "intel", "img", "/srv")
    with pytest.raises(ValueError, match="engine='lxc': expected one of docker, podman"):
        container_prefix("lxc", "none", "img", "/srv")
    with pytest.raises(ValueError, match="make image"):
        container_prefix("docker", "amd", " ", "/srv")
    with pytest.raises(ValueError, match="comma"):
        container_prefix("docker", "none", "img", "/srv", ["/data/a,b"])
    with pytest.raises(TypeError, match="read_only path=3: expected a path"):
        container_prefix("docker", "none", "img", "/srv", [3])


def _answers(error: str = "", **codes: int):
    """A fake ``run`` for check_engine: exit code per sub-command, ``error`` on stderr."""
    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        code = codes.get(command[1], 0)
        return subprocess.CompletedProcess(command, code, "", error if code else "")
    return run


DOCKER_DOWN = ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
               "Is the docker daemon running?")
DOCKER_DENIED = ("permission denied while trying to connect to the Docker daemon socket at "
                 "unix:///var/run/docker.sock")
PODMAN_DENIED = ("cannot set up namespace using newuidmap: exit status 1: "
                 "newuidmap: write to uid_map failed: Operation not permitted")


@pytest.mark.parametrize("engine", container.ENGINES)
def test_check_engine_names_the_fix_in_one_line(monkeypatch, tmp_path, engine):
    present = {engine: f"/usr/bin/{engine}"}.get
    missing = check_engine(engine, "overnight:cpu", "none", which=lambda _: None)
    assert f"{engine} not found on PATH: install" in missing and "RUNNER=local" in missing
    image = check_engine(engine, "overnight:rocm", "amd", _answers(image=1), present)
    assert image == (f"{engine} has no image overnight:rocm: build it with "
                     f"`make image ENGINE={engine} GPU=amd`")
    monkeypatch.setitem(container._GPU_DEVICES, "amd", (str(tmp_path / "kfd"),))
    assert "does not exist" in check_engine(engine, "overnight:rocm", "amd", _answers(),
                                            present)
    (tmp_path / "kfd").touch()
    assert check_engine(engine, "overnight:rocm", "amd", _answers(), present) is None
    for problem in (missing, image):
        assert "\n" not in problem


def test_a_stopped_daemon_and_no_permission_are_told_apart():
    present = {"docker": "/usr/bin/docker", "podman": "/usr/bin/podman"}.get
    down = check_engine("docker", "img", "none", _answers(DOCKER_DOWN, info=1), present)
    assert "cannot reach the Docker daemon" in down and "systemctl start docker" in down
    assert "podman.socket" in down  # or Podman's Docker-compatible socket
    denied = check_engine("docker", "img", "none", _answers(DOCKER_DENIED, info=1), present)
    assert "may not use the Docker daemon" in denied and "usermod -aG docker" in denied
    rootless = check_engine("podman", "img", "none", _answers("Error: " + PODMAN_DENIED,
                                                              info=1), present)
    assert "may not run Podman" in rootless and "--add-subuids" in rootless
    no_ids = check_engine("podman", "img", "none", _answers(
        'cannot find UID/GID for user me: no subuid ranges found for user "me" in '
        "/etc/subuid", info=1), present)
    assert "may not run Podman" in no_ids
    homeless = check_engine("podman", "img", "none", _answers(
        "cannot resolve /nonexistent: lstat /nonexistent: no such file or directory",
        info=1), present)
    assert "user who has one" in homeless
    remote = check_engine("podman", "img", "none",
                          _answers("Error: unable to connect to Podman socket", info=1), present)
    assert "podman does not answer" in remote and "podman.socket" in remote
    for problem in (down, denied, rootless, no_ids, homeless, remote):
        assert "\n" not in problem


@pytest.mark.parametrize("engine", container.ENGINES)
def test_stale_containers_are_found_by_label(engine):
    seen = []

    def run(command):
        seen.append(command)
        return subprocess.CompletedProcess(command, 0, "abc123\ndef456\n", "")

    assert stale_containers(engine, "/srv/overnight", run) == ["abc123", "def456"]
    assert seen[0][:3] == [engine, "ps", "--all"]  # exited ones too: they ran without --rm
    assert f"label={container.CONTAINER_LABEL}=/srv/overnight" in seen[0]


def test_each_stage_container_gets_a_name_of_its_own_and_can_be_removed():
    prefix = _prefix("none", "podman")
    named, name = with_name([*prefix, "jobs/train.py"], "train-baseline")
    assert named[:4] == ["podman", "run", "--name", name]
    # without --rm (the runner removes it by name): Docker's client on Podman's socket
    # reports 0 for a --rm container whatever its job returned
    assert prefix[2] == "--rm" and named[4:] == [*prefix[3:], "jobs/train.py"]
    assert name.startswith("overnight-train-baseline-")
    assert with_name([*prefix, "x"], "train-baseline")[1] != name
    local = [sys.executable, "jobs/train.py"]
    assert with_name(local, "train-baseline") == (local, None)
    assert with_name(["docker", "build", "."], "x") == (["docker", "build", "."], None)

    seen = []

    def run(command):
        seen.append(command)
        return subprocess.CompletedProcess(command, 0, f"{name}\n", "")

    assert remove("podman", name, run) and seen == [["podman", "rm", "--force", name]]
    gone = subprocess.CompletedProcess([], 1, "", f"Error: no container with name {name}")
    assert not remove("docker", name, lambda command: gone)


def test_a_container_whose_monitor_died_is_removed_at_the_second_try():
    # Podman, after the runner stopped the client and with it the container's monitor
    answers = [subprocess.CompletedProcess([], 125, "", "Error: cannot remove container "
                                           "abc as it could not be stopped: timed out waiting "
                                           "for file /run/libpod/exits/abc"),
               subprocess.CompletedProcess([], 0, "overnight-x\n", "")]
    assert remove("podman", "overnight-x", lambda command: answers.pop(0))
    assert not answers


def test_job_prints_the_prefix_as_one_shell_line(capsys):
    spec = importlib.util.spec_from_file_location("container_job", REPO / "jobs" / "container.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)

    for engine in container.ENGINES:
        assert job.main(["prefix", "--engine", engine, "--gpu", "nvidia", "--image",
                         "overnight:cuda", "--repo", "/srv/overnight", "--ro", "/data/hbn",
                         "--rw", "runs/x"]) == 0
        printed = shlex.split(capsys.readouterr().out)
        assert printed == container_prefix(engine, "nvidia", "overnight:cuda",
                                           "/srv/overnight", ["/data/hbn"], ["runs/x"])


def _make_dry_run(tmp_path: Path, gpu: str, runner: str = "docker") -> str:
    variables = {"RUNNER": runner, "GPU": gpu, "DATA": "/data/hbn/R1_L100 /data/hbn/R2_L100",
                 "RUNS": str(tmp_path / "runs"), "DATE": "2026-01-02",
                 "SUBMISSION": str(tmp_path / "submission"), "REPORTS": str(tmp_path / "reports"),
                 "PYTHON": sys.executable}
    proc = subprocess.run(["make", "-C", str(REPO), "-n", "overnight",
                           *[f"{k}={v}" for k, v in variables.items()]],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def _stage_commands(output: str, stage: str, work: str) -> list[str]:
    return [line for line in output.splitlines()
            if f"--work {work} {stage} -- " in line]


@pytest.mark.parametrize("gpu", ["amd", "nvidia", "none"])
def test_make_dry_run_shows_the_docker_command_of_every_stage(tmp_path, gpu):
    out = _make_dry_run(tmp_path, gpu)
    night = str(tmp_path / "runs" / "2026-01-02")

    for stage, job in [("windows", "windows.py"), ("features", "features.py"),
                       ("train-baseline", "train.py"), ("train-hybrid", "train.py"),
                       ("search", "search.py"), ("compare", "compare.py"),
                       ("report", "report.py")]:
        for work in (night, f"{night}/preflight"):
            # make -n search shows the windows and features it needs again: the same line
            (line,) = set(_stage_commands(out, stage, work))
            words = shlex.split(line.split(" -- ", 1)[1].replace("\\", ""))
            assert words[:3] == ["docker", "run", "--rm"]
            assert f"overnight:{container.IMAGE_FLAVOURS[gpu]}" in words
            assert words[words.index("python") + 1] == f"jobs/{job}"
            assert ("--device=/dev/kfd" in words) == (gpu == "amd")
            assert ("--gpus" in words) == (gpu == "nvidia")
            if stage == "windows":  # every release is mounted, read only
                for root in ("/data/hbn/R1_L100", "/data/hbn/R2_L100"):
                    assert f"type=bind,source={root},target={root},readonly" in words
            if stage == "search":  # the studies, read-write; the storage's URL by name only
                studies = (f"{work}/studies" if work.endswith("preflight")
                           else f"{tmp_path}/runs/search")
                assert f"type=bind,source={studies},target={studies}" in words
                assert words[words.index("SEARCH_STORAGE") - 1] == "--env"
    assert "preflight: check docker, that it answers, and the image" in out
    assert ("preflight: link up to 20 subjects of /data/hbn/R1_L100 /data/hbn/R2_L100"
            in out)
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


@pytest.mark.parametrize("gpu", ["amd", "nvidia"])
def test_make_n_shows_torchrun_inside_one_container_per_node(tmp_path, gpu):
    def dry_run(*extra: str) -> list[str]:
        variables = {"RUNNER": "docker", "GPU": gpu, "DATA": "/data/hbn/R1_L100",
                     "WORK": str(tmp_path / "night"), "PYTHON": sys.executable}
        proc = subprocess.run(["make", "-C", str(REPO), "-n", "-B", "train-baseline",
                               *[f"{k}={v}" for k, v in variables.items()], *extra],
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        (line,) = _stage_commands(proc.stdout, "train-baseline", str(tmp_path / "night"))
        return shlex.split(line.split(" -- ", 1)[1].replace("\\", ""))

    words = dry_run("NPROC=4")
    assert words[:2] == ["docker", "run"] and words.count("docker") == 1  # one container
    python = words.index("python")
    assert words[python + 1:python + 7] == ["-m", "torch.distributed.run", "--nproc-per-node",
                                            "4", "--standalone", "jobs/train.py"]
    assert "--network" not in words
    nodes = dry_run("NPROC=8", "NNODES=2", "NODE_RANK=1", "RDZV_ENDPOINT=node0:29400")
    assert _pairs(nodes, "--network") == ["host"]
    for flag, value in (("--nnodes", "2"), ("--node-rank", "1"), ("--rdzv-backend", "c10d"),
                        ("--rdzv-endpoint", "node0:29400")):
        assert _pairs(nodes, flag) == [value]
    assert "CUDA_VISIBLE_DEVICES" in _pairs(nodes, "--env")  # GPUS pins pass through


@pytest.mark.parametrize("gpu", ["amd", "nvidia"])
def test_make_dry_run_with_podman_shows_its_device_flags(tmp_path, gpu):
    out = _make_dry_run(tmp_path, gpu, runner="podman")
    night = str(tmp_path / "runs" / "2026-01-02")
    (line,) = set(_stage_commands(out, "train-baseline", night))
    words = shlex.split(line.split(" -- ", 1)[1].replace("\\", ""))
    assert words[:3] == ["podman", "run", "--rm"]
    if gpu == "amd":
        assert {"--device=/dev/kfd", "--device=/dev/dri"} <= set(words)
    else:
        assert _pairs(words, "--device") == ["nvidia.com/gpu=all"]
    assert "--gpus" not in words
    assert "preflight: check podman, that it answers, and the image" in out


def test_make_image_takes_the_engine_base_and_torch_index():
    proc = subprocess.run(["make", "-C", str(REPO), "-s", "-n", "image", "ENGINE=podman",
                           "BASE_IMAGE=localhost/debian-python:bookworm",
                           "TORCH_INDEX=http://127.0.0.1:8000/", f"PYTHON={sys.executable}"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    words = shlex.split(proc.stdout.replace("\\\n", " "))
    assert words[:2] == ["podman", "build"] and words[-1] == "."
    assert _pairs(words, "--build-arg") == ["BASE_IMAGE=localhost/debian-python:bookworm",
                                            "TORCH_INDEX=http://127.0.0.1:8000/"]
    default = subprocess.run(["make", "-C", str(REPO), "-s", "-n", "image", "RUNNER=podman",
                              f"PYTHON={sys.executable}"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert default.stdout.split()[:2] == ["podman", "build"]  # the runner's engine
    assert "--build-arg" not in default.stdout  # the Dockerfile's own defaults
