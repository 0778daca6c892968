"""The scorer's environment: a virtualenv with the challenge inference image's Python and
packages (``requirements-scorer.txt``), beside the project's, where the promotion check and
``make score`` run a submission as the scorer would.

``make scorer-env`` (``python -m overnight.champion.scorer_env``) builds it once, as
``.venv-scorer`` in the checkout; ``OVERNIGHT_SCORER_PYTHON`` points at an interpreter of
your own instead. It is ready once its stamp file is written, last, so an interrupted build
is never taken for a finished one.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from overnight.provenance import REPO

log = logging.getLogger(__name__)

SCORER_PYTHON_VERSION = (3, 10)
SCORER_PYTHON_TEXT = ".".join(map(str, SCORER_PYTHON_VERSION))
REQUIREMENTS = REPO / "requirements-scorer.txt"
SCORER_VENV = REPO / ".venv-scorer"
STAMP_FILE = "overnight-scorer.json"  # in the venv, written last: what it holds
PYTHON_OVERRIDE = "OVERNIGHT_SCORER_PYTHON"
# PyTorch's own index of CPU builds (torch 2.2.2+cpu: about 200 MB instead of PyPI's CUDA
# build's 2.5 GB); TORCH_CPU_INDEX overrides it, an empty value skips it.
CPU_INDEX = os.environ.get("TORCH_CPU_INDEX", "https://download.pytorch.org/whl/cpu")
_VERSIONS = ("import sys, json, numpy, torch\n"
             "try:\n import braindecode; b = braindecode.__version__\n"
             "except ImportError:\n b = None\n"
             "print(json.dumps({'python': '%d.%d.%d' % sys.version_info[:3], "
             "'torch': torch.__version__, 'numpy': numpy.__version__, 'braindecode': b}))")


def scorer_python() -> Path | None:
    """The scorer environment's interpreter, or None when there is none (``make
    scorer-env`` not run, or its build did not finish)."""
    override = os.environ.get(PYTHON_OVERRIDE)
    if override:
        return Path(override)
    python = SCORER_VENV / "bin" / "python"
    return python if (SCORER_VENV / STAMP_FILE).is_file() and python.exists() else None


def find_base_python() -> Path:
    """A Python of ``SCORER_PYTHON_VERSION``, found as a user would: on the PATH, then in
    pyenv's versions, then the system's.

    Raises
    ------
    FileNotFoundError
        None found: the message says how to get one.
    """
    name = f"python{SCORER_PYTHON_TEXT}"
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = [shutil.which(name),
                  *sorted(glob.glob(f"{pyenv_root}/versions/{SCORER_PYTHON_TEXT}.*/bin/{name}"),
                          reverse=True),
                  f"/usr/bin/{name}", f"/usr/local/bin/{name}"]
    for candidate in candidates:
        if candidate and _is_version(Path(candidate)):
            return Path(candidate)
    version = SCORER_PYTHON_TEXT
    raise FileNotFoundError(
        f"no {name} found (PATH, {pyenv_root}/versions, /usr/bin): the scorer runs Python "
        f"{version}; install it (pyenv install {version}, or uv python install {version}, or "
        f"your distribution's {name} package), then rerun make scorer-env")


def _is_version(python: Path) -> bool:
    try:
        out = subprocess.run([str(python), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.stdout.strip() == str(SCORER_PYTHON_VERSION)


def cpu_index_answers(url: str = CPU_INDEX, timeout_s: float = 10.0) -> bool:
    """Whether PyTorch's CPU index answers (through the proxy settings pip also uses)."""
    if not url:
        return False
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout_s):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def create(venv: Path = SCORER_VENV) -> dict[str, Any]:
    """Build the scorer environment at ``venv`` (again, if a build was interrupted);
    return its stamp: the versions it holds."""
    base = find_base_python()
    stamp = venv / STAMP_FILE
    stamp.unlink(missing_ok=True)
    log.info("creating %s with %s", venv, base)
    subprocess.run([str(base), "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--quiet", "--upgrade", "pip"], check=True)
    install = [*pip, "install", "-r", str(REQUIREMENTS)]
    if cpu_index_answers():
        log.info("taking torch's CPU build from %s", CPU_INDEX)
        install += ["--extra-index-url", CPU_INDEX]  # 2.2.2+cpu ranks above PyPI's 2.2.2
    else:
        log.warning("PyTorch's CPU index (%s) does not answer: installing PyPI's torch, "
                    "on x86_64 Linux the CUDA build (about 2.5 GB to download, 5 GB "
                    "installed); it runs on the CPU too", CPU_INDEX or "skipped")
    subprocess.run(install, check=True)
    versions = subprocess.run([str(venv / "bin" / "python"), "-c", _VERSIONS],
                              capture_output=True, text=True, check=True)
    record = {**json.loads(versions.stdout), "requirements": REQUIREMENTS.name}
    tmp = stamp.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(stamp)  # the environment is ready from here on
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the scorer's environment "
                                                 "(Python 3.10, torch 2.2.2) once.")
    parser.add_argument("--venv", type=Path, default=SCORER_VENV)
    parser.add_argument("--force", action="store_true", help="rebuild even if it is ready")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if (args.venv / STAMP_FILE).is_file() and not args.force:
        print(f"{args.venv} is ready: {(args.venv / STAMP_FILE).read_text().strip()}")
        return 0
    try:
        record = create(args.venv)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"building {args.venv} failed: {' '.join(exc.cmd)} exited with "
              f"{exc.returncode}; rerun make scorer-env", file=sys.stderr)
        return 1
    print(f"{args.venv} is ready: Python {record['python']}, torch {record['torch']}, "
          f"numpy {record['numpy']}, braindecode {record['braindecode']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
