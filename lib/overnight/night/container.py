"""The container runner: the command prefix that runs a job in a container, and its checks.

``container_prefix`` builds ``<engine> run ... IMAGE python`` for one engine (Docker or
Podman) and one GPU kind; the Makefile puts it in front of every job (``RUNNER=docker`` or
``RUNNER=podman``), so the jobs themselves never change. Paths
are mounted at the same absolute path inside the container as on the host, so every path
on a job's command line means the same file on both sides; the checkout's ``lib/`` comes
first on ``PYTHONPATH``, so the container runs this checkout's code, not the copy baked
into the image. ``check_engine`` says, before a night starts, what is missing and how to
fix it. ``with_name`` gives each stage's container a name of its own, so that the stage
runner can remove a container that outlived its stopped client (``remove``).

Standard library only: this runs on the host, which needs no virtualenv for a container
night.
"""

from __future__ import annotations

import grp
import os
import secrets
import shlex
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from overnight.checks import absolute
from overnight.config import SEARCH_STORAGE_ENV

ENGINES = ("docker", "podman")  # the RUNNER values that run jobs in containers
GPU_KINDS = ("amd", "nvidia", "none")
IMAGE_FLAVOURS = {"amd": "rocm", "nvidia": "cuda", "none": "cpu"}  # docker/Dockerfile.<flavour>
CONTAINER_LABEL = "org.overnight.checkout"  # marks our containers, to find ones left running
SHM_SIZE = "16g"  # PyTorch on ROCm wants a large /dev/shm
NUMBA_CACHE = ".numba_cache"  # in the checkout: compiled kernels survive the --rm container
REMOVE_ATTEMPTS = 2  # rm --force: the second removes what a dead monitor left (remove())

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
# --ipc=host on NVIDIA: NCCL's shared memory between the torchrun processes of one container
_GPU_FLAGS = {
    "amd": ("--device=/dev/kfd", "--device=/dev/dri", "--ipc=host", f"--shm-size={SHM_SIZE}",
            "--security-opt", "seccomp=unconfined"),
    "nvidia": ("--ipc=host",),
    "none": (),
}
# Podman reaches NVIDIA GPUs through CDI (nvidia-ctk cdi generate), as NVIDIA documents.
_NVIDIA_DEVICES = {"docker": ("--gpus", "all"), "podman": ("--device", "nvidia.com/gpu=all")}
# Podman on an SELinux host (Fedora, RHEL) denies reads of unlabelled bind mounts; relabelling
# the user's checkout and data (:z) would change their files, so the label is not applied.
_PODMAN_FLAGS = ("--security-opt", "label=disable")
# Rootless Podman maps the caller to root in the container; keep-id maps them to their own
# uid, so the files a job writes are theirs.
_ROOTLESS_FLAGS = ("--userns=keep-id",)


def image_name(gpu: str) -> str:
    """The default image tag for a GPU kind, ``overnight:rocm|cuda|cpu``."""
    _check_gpu(gpu)
    return f"overnight:{IMAGE_FLAVOURS[gpu]}"


def container_prefix(engine: str, gpu: str, image: str, repo: str | os.PathLike[str],
                     read_only: Sequence[str | os.PathLike[str]] = (),
                     read_write: Sequence[str | os.PathLike[str]] = (),
                     user: tuple[int, int] | None = None, render_gid: int | None = None,
                     host_network: bool = False, rootless: bool | None = None) -> list[str]:
    """The ``<engine> run`` words that run ``python`` in ``image``; append the job's arguments.

    Parameters
    ----------
    engine : {"docker", "podman"}
        The container engine. Docker may also be Podman's Docker-compatible socket
        (``DOCKER_HOST=unix:///run/podman/podman.sock``): the words are Docker's.
    gpu : {"amd", "nvidia", "none"}
        Which GPU the container gets (AMD: ROCm devices, groups, IPC, shared memory and
        seccomp; NVIDIA: ``--gpus all`` with Docker, the CDI device with Podman).
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
    rootless : bool, optional
        Podman runs without root (default: the caller is not root): the caller keeps their
        uid and groups in the container.

    Returns
    -------
    list of str
        ``<engine> run --rm ... IMAGE python``.

    Raises
    ------
    TypeError
        A path or the image is not a string or path.
    ValueError
        An unknown engine or ``gpu``, an empty image name, or a path ``--mount`` cannot
        express (one with a comma).
    """
    _check_engine_name(engine)
    _check_gpu(gpu)
    if not isinstance(image, str) or not image.strip():
        raise ValueError(f"image={image!r}: expected an image name such as "
                         f"{image_name(gpu)!r} (make image builds it)")
    repo_path = absolute(repo, "repo")
    uid, gid = user if user is not None else (os.getuid(), os.getgid())
    rootless_podman = engine == "podman" and (os.getuid() != 0 if rootless is None
                                              else rootless)
    words = [engine, "run", "--rm", "--init", "--label", f"{CONTAINER_LABEL}={repo_path}",
             "--user", f"{uid}:{gid}", *_GPU_FLAGS[gpu]]
    if gpu == "nvidia":
        words += _NVIDIA_DEVICES[engine]
    if gpu == "amd":
        words += _amd_groups(rootless_podman, render_gid)
    if engine == "podman":
        words += [*_PODMAN_FLAGS, *(_ROOTLESS_FLAGS if rootless_podman else ())]
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


def _amd_groups(rootless_podman: bool, render_gid: int | None) -> list[str]:
    """The groups that may open /dev/kfd and /dev/dri: video and the host's render group,
    or, for rootless Podman (where the container has no such gids), the caller's own."""
    if rootless_podman:
        return ["--group-add", "keep-groups"]
    gid_render = _group_id("render") if render_gid is None else render_gid
    return ["--group-add", "video",
            *(["--group-add", str(gid_render)] if gid_render is not None else [])]


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
        raise ValueError(f"path {str(path)!r}: --mount cannot take a path with a "
                         "comma; rename the folder")
    spec = f"type=bind,source={path},target={path}"
    return spec + ",readonly" if mode == "ro" else spec


def check_engine(engine: str, image: str, gpu: str,
                 run: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = None,
                 which: Callable[[str], str | None] = shutil.which) -> str | None:
    """What stops ``image`` from running tonight under ``engine``, in one line that names
    the fix; None when nothing does.

    Checks, in order: the engine's command, that it answers (the daemon or socket, and the
    permission to use it), the image, and for a GPU kind the device files it passes in.
    """
    _check_engine_name(engine)
    _check_gpu(gpu)
    run = run or _run_quietly
    if which(engine) is None:
        return f"{engine} not found on PATH: {_INSTALL[engine]}, or run with RUNNER=local"
    info = run([engine, "info", "--format", "{{.Host.Arch}}" if engine == "podman"
                else "{{.ServerVersion}}"])
    if info.returncode != 0:
        return _unreachable(engine, _last_line(info.stderr))
    inspect = run([engine, "image", "inspect", "--format", "{{.Id}}", image])
    if inspect.returncode != 0:
        return (f"{engine} has no image {image}: build it with "
                f"`make image ENGINE={engine} GPU={gpu}`")
    missing = [d for d in _GPU_DEVICES.get(gpu, ()) if not Path(d).exists()]
    if missing:
        return (f"GPU={gpu} but {', '.join(missing)} does not exist on this host: install "
                "the GPU driver (ROCm: amdgpu-dkms) or run with GPU=none")
    return None


_INSTALL = {"docker": "install Docker Engine (https://docs.docker.com/engine/install/)",
            "podman": "install Podman (apt-get install podman, dnf install podman)"}


# How a refusal reads: Docker's socket, or rootless Podman with no subordinate ids
_REFUSED = ("permission denied", "operation not permitted", "subuid", "newuidmap")


def _unreachable(engine: str, error: str) -> str:
    """Why ``engine info`` failed, as the fix: permission, a stopped daemon or socket."""
    said = f"{engine} info: {error}"
    if any(sign in error.lower() for sign in _REFUSED):
        if engine == "docker":
            return (f"this user may not use the Docker daemon ({said}): sudo usermod -aG "
                    "docker $USER, then log in again (or use RUNNER=podman, rootless)")
        return (f"this user may not run Podman ({said}): give them subordinate ids "
                "(sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 "
                "$USER), then podman system migrate")
    if engine == "docker":
        where = os.environ.get("DOCKER_HOST", "the default socket")
        return (f"cannot reach the Docker daemon at {where} ({said}): start it (sudo "
                "systemctl start docker), or for Podman's socket, systemctl --user start "
                "podman.socket and set DOCKER_HOST")
    if "no such file or directory" in error.lower():
        return (f"podman cannot reach a folder it needs ({said}): rootless Podman keeps its "
                "images under the user's home, so run the night as a user who has one")
    return (f"podman does not answer ({said}): for a remote engine (CONTAINER_HOST), start "
            "its service (systemctl --user start podman.socket); otherwise podman system "
            "migrate, or reinstall Podman")


_GPU_DEVICES = {"amd": ("/dev/kfd", "/dev/dri")}


def stale_containers(engine: str, repo: str | os.PathLike[str],
                     run: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = None
                     ) -> list[str]:
    """IDs of containers this checkout started that a killed night left, running or
    exited (the runner's run without --rm: ``with_name``)."""
    run = run or _run_quietly
    repo_path = absolute(repo, "repo")
    listed = run([engine, "ps", "--all", "--quiet", "--filter",
                  f"label={CONTAINER_LABEL}={repo_path}"])
    return listed.stdout.split() if listed.returncode == 0 else []


def with_name(command: Sequence[str], stage: str) -> tuple[list[str], str | None]:
    """``command`` with a container name of its own when it is ``<engine> run ...``, and
    that name (None for any other command): ``overnight-<stage>-<random>``.

    The named command runs without ``--rm``: Docker's client on Podman's socket before 4.6
    reports exit code 0 for a ``--rm`` container whatever its job returned
    (containers/podman#18889), which would pass a failed stage. The runner removes the
    container by its name once the client has ended (``remove``)."""
    words = list(command)
    if len(words) < 2 or Path(words[0]).name not in ENGINES or words[1] != "run":
        return words, None
    name = f"overnight-{stage}-{secrets.token_hex(4)}"
    options = words[3:] if words[2:3] == ["--rm"] else words[2:]  # container_prefix's order
    return [*words[:2], "--name", name, *options], name


def remove(engine: str, name: str,
           run: Callable[[list[str]], subprocess.CompletedProcess[str]] | None = None) -> bool:
    """Kill and remove the container ``name`` once its client has ended (it ran without
    --rm, and a job deaf to SIGTERM outlives a stopped client); True when there was one to
    remove.

    Podman without a daemon: stopping the client's processes stops the container's monitor
    too, and the first ``rm`` then fails ("timed out waiting for file .../exits/<id>") after
    marking the container exited; the second removes it."""
    run = run or _run_quietly
    for _ in range(REMOVE_ATTEMPTS):
        removed = run([engine, "rm", "--force", name])
        if removed.returncode == 0:
            return bool(removed.stdout.strip())
    return False


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


def _check_engine_name(engine: object) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {', '.join(ENGINES)}")


def _check_gpu(gpu: object) -> None:
    if gpu not in GPU_KINDS:
        raise ValueError(f"GPU={gpu!r}: expected one of {', '.join(GPU_KINDS)}")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
