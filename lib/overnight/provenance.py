"""Where an artefact came from: the code version and the environment."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def code_version() -> str:
    """The git commit of this checkout (``+dirty`` when it has local changes), or 'unknown'."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, str]:
    """Versions of the interpreter, the key packages and the compute device."""
    import h5py
    import numba
    import numpy
    import torch

    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU ({platform.processor() or platform.machine()}, "
        device += f"{torch.get_num_threads()} threads)"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "h5py": h5py.__version__,
        "device": device,
        "host": platform.node(),
        "code_version": code_version(),
    }
