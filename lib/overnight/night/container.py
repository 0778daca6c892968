"""The docker runner: the command prefix that runs a job in a container, and its checks.

``docker_prefix`` builds ``docker run ... IMAGE python`` for one GPU kind; the Makefile puts
it in front of every job (``RUNNER=docker``), so the jobs themselves never change. Paths
are mounted at the same absolute path inside the container as on the host, so every path
on a job's command line means the same file on both sides; the checkout's ``lib/`` comes
first on ``PYTHONPATH``, so the container runs this checkout's code, not the copy baked
into the image. ``check_docker`` says, before a night starts, what is missing and how to
fix it.

Standard library only: this runs on the host, which needs no virtualenv for a docker night.
"""

from __future__ import annotations

import grp
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from overnight.checks import absolute
from overnight.config import SEARCH_STORAGE_ENV

GPU_KINDS = ("amd", "nvidia", "none")
IMAGE_FLAVOURS = {"amd": "rocm", "nvidia": "cuda", "none": "cpu"}  # docker/Dockerfile.<flavour>
CONTAINER_LABEL = "org.overnight.checkout"  # marks our containers, to find ones left running
SHM_SIZE = "16g"  # PyTorch on ROCm wants a large /dev/shm
NUMBA_CACHE = ".numba_cache"  # in the checkout: compiled kernels survive the --rm container

# Host variables that choose a GPU or make a consumer card work. ``--env NAME`` without a
# value makes docker copy the caller's value when it is set at run time (and nothing when it
# is not), so the prefix need not know, and make -n never shows a value.
_PASSTHROUGH = {
    "amd": ("HSA_OVERRIDE_GFX_VERSION", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
            "CUDA_VISIBLE_DEVICES"),
    "nvidia": ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"),
    "none": (),
}
# What the jobs read from the environment whatever the GPU: the search's shared storage
# (a URL with a password, which must not show on a command line).
_JOB_ENVIRONMENT = (SEARCH_STORAGE_ENV,)
_GPU_FLAGS = {
    "amd": ("--device=/dev/kfd", "--device=/dev/dri", "--group-add", "video", "--ipc=host",
            f"--shm-size={SHM_SIZE}", "--security-opt", "seccomp=unconfined"),
    # --ipc=host: NCCL's shared memory between the torchrun processes of one container
    "nvidia": ("--gpus", "all", "--ipc=host"),
    "none": (),
}


def image_name(gpu: str) -> str:
    """The default image tag for a GPU kind, ``overnight:rocm|cuda|cpu``."""
    _check_gpu(gpu)
    return f"overnight:{IMAGE_FLAVOURS[gpu]}"


def docker_prefix(gpu: str, image: str, repo: str | os.PathLike[str],
                  read_only: Sequence[str | os.PathLike[str]] = (),
                  read_write: Sequence[str | os.PathLike[str]] = (),
                  user: tuple[int, int] | None = None,
                  render_gid: int | None = None, host_network: bool = False) -> list[str]:
    """The ``docker run`` words that run ``python`` in ``image``; append the job's arguments.

    Parameters
    ----------
    gpu : {"amd", "nvidia", "none"}
        Which GPU the container gets (AMD: ROCm devices, groups, IPC, shared memory and
        seccomp; NVIDIA: ``--gpus all``).
    image : str
        The image to run, e.g. ``overnight:rocm`` (``make image`` builds it).
    repo : str or path-like
        The checkout: mounted read-only at its own path, the working directory, and its
        ``lib/`` first on ``PYTHONPATH``.
    read_only, read_write : sequence of str or path-like
        Host paths to mount read-only (the input data) or read-write (the night folder,
        reports, submission). A path in both is mounted read-write; relative paths are
        taken from ``repo``. Sources must exist when the container starts.
    user : (uid, gid), optional
        Who the job runs as (default: the calling user), so its files belong to them.
    render_gid : int, optional
        GID of the host's ``render`` group for AMD (default: looked up; skipped when the
        host has none).

    Returns
    -------
    list of str
        ``docker run --rm ... IMAGE python``.

    Raises
    ------
    TypeError
        A path or the image is not a string or path.
    ValueError
        An unknown ``gpu``, an empty image name, or a path docker's ``--mount`` cannot
        express (one with a comma).
    """
    _check_gpu(gpu)
    if not isinstance(image, str) or not image.strip():
        raise ValueError(f"image={image!r}: expected an image name such as "
                         f"{image_name(gpu)!r} (make image builds it)")
    repo_path = absolute(repo, "repo")
    uid, gid = user if user is not None else (os.getuid(), os.getgid())
    words = ["docker", "run", "--rm", "--init", "--label", f"{CONTAINER_LABEL}={repo_path}",
             "--user", f"{uid}:{gid}", *_GPU_FLAGS[gpu]]
    if gpu == "amd":
        gid_render = _group_id("render") if render_gid is None else render_gid
        if gid_render is not None:
            words += ["--group-add", str(gid_render)]
    for path, mode in _mounts(repo_path, read_only, read_write):
        words += ["--mount", _mount_spec(path, mode)]
    if Path("/etc/localtime").exists():  # job logs in the host's time zone, as the runner's
        words += ["--mount", "type=bind,source=/etc/localtime,target=/etc/localtime,readonly"]
    words += ["--workdir", str(repo_path),
              "--env", f"PYTHONPATH={repo_path / 'lib'}",
              "--env", f"NUMBA_CACHE_DIR={repo_path / NUMBA_CACHE}",
              "--env", "HOME=/tmp"]  # the calling uid may have no home in the image
    for name in (*_PASSTHROUGH[gpu], *_JOB_ENVIRONMENT):
        words += ["--env", name]
    if host_network:  # torchrun across nodes: the rendezvous and NCCL/RCCL reach the peers
        words += ["--network", "host"]
    return [*words, image, "python"]


def _mounts(repo: Path, read_only: Sequence[str | os.PathLike[str]],
            read_write: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """(path, "ro"|"rw") in a stable order: the checkout, then the given paths; rw wins."""
    modes: dict[Path, str] = {repo: "ro", repo / NUMBA_CACHE: "rw"}
    for value in read_only:
        modes.setdefault(absolute(value, "read_only path", repo), "ro")
    for value in read_write:
        modes[absolute(value, "read_write path", repo)] = "rw"
    return list(modes.items())


def _mount_spec(path: Path, mode: str) -> str:
    if "," in str(path):
        raise ValueError(f"path {str(path)!r}: docker --mount cannot take a path with a "
                         "comma; rename the folder")
    spec = f"type=bind,source={path},target={path}"
    return spec + ",readonly" if mode == "ro" else spec


def check_docker(image: str, gpu: str,
                 run: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = None,
                 which: Callable[[str], str | None] = shutil.which) -> str | None:
    """What stops ``image`` from running tonight, with the fix; None when nothing does.

    Checks, in order: the ``docker`` command, the daemon, the image, and for a GPU kind
    the device files it passes in.
    """
    _check_gpu(gpu)
    run = run or _run_quietly
    if which("docker") is None:
        return ("docker not found on PATH: install Docker Engine "
                "(https://docs.docker.com/engine/install/) or run with RUNNER=local")
    info = run(["docker", "info", "--format", "{{.ServerVersion}}"])
    if info.returncode != 0:
        return ("cannot reach the Docker daemon (docker info: "
                f"{_last_line(info.stderr)}): start it (sudo systemctl start docker) and "
                "make sure this user may use it (sudo usermod -aG docker $USER, then log in "
                "again)")
    inspect = run(["docker", "image", "inspect", "--format", "{{.Id}}", image])
    if inspect.returncode != 0:
        return f"docker image {image} not found: build it with `make image GPU={gpu}`"
    missing = [d for d in _GPU_DEVICES.get(gpu, ()) if not Path(d).exists()]
    if missing:
        return (f"GPU={gpu} but {', '.join(missing)} does not exist on this host: install "
                "the GPU driver (ROCm: amdgpu-dkms) or run with GPU=none")
    return None


_GPU_DEVICES = {"amd": ("/dev/kfd", "/dev/dri")}


def stale_containers(repo: str | os.PathLike[str],
                     run: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = None
                     ) -> list[str]:
    """IDs of containers this checkout started that still run (left by a killed night)."""
    run = run or _run_quietly
    repo_path = absolute(repo, "repo")
    listed = run(["docker", "ps", "--quiet", "--filter",
                  f"label={CONTAINER_LABEL}={repo_path}"])
    return listed.stdout.split() if listed.returncode == 0 else []


def shell_words(words: Sequence[str]) -> str:
    """``words`` as one shell-quoted line, for the Makefile."""
    return shlex.join(words)


def _run_quietly(command: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(command, 1, "", str(exc))


def _group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def _check_gpu(gpu: object) -> None:
    if gpu not in GPU_KINDS:
        raise ValueError(f"GPU={gpu!r}: expected one of {', '.join(GPU_KINDS)}")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
