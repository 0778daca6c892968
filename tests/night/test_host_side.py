"""The host side needs only the standard library: the night package imports, and
`make -n overnight` runs, with numpy, torch and h5py made unimportable."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import overnight.night

REPO = Path(__file__).resolve().parents[2]
BLOCKED = ("numpy", "torch", "h5py", "scipy", "numba", "mne")


@pytest.fixture
def without_packages(tmp_path) -> dict[str, str]:
    """An environment whose Python finds a package that raises in place of each of BLOCKED."""
    for name in BLOCKED:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(
            f"raise ImportError('the host side imported {name}')\n")
    return {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO / 'lib'}"}


def test_every_night_module_imports_without_them(without_packages):
    modules = [f"overnight.night.{m.name}" for m in pkgutil.iter_modules(overnight.night.__path__)]
    assert "overnight.night.driver" in modules and "overnight.night.status" in modules
    script = ("import importlib, sys\n"
              "for name in sys.argv[1:]: importlib.import_module(name)\n"
              "print('imported', len(sys.argv) - 1)\n"
              "try:\n    import numpy\nexcept ImportError as err:\n    print(err)\n")
    proc = subprocess.run([sys.executable, "-c", script, *modules], env=without_packages,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    # every module imported, and the blocker does block
    assert proc.stdout.splitlines() == [f"imported {len(modules)}",
                                        "the host side imported numpy"]


@pytest.mark.parametrize("runner", ["local", "docker"])
def test_make_dry_run_overnight_without_them(without_packages, tmp_path, runner):
    stamp = tmp_path / "setup-done"
    stamp.touch()
    variables = {"RUNNER": runner, "GPU": "none", "PYTHON": sys.executable,
                 "VENV": sys.prefix, "SETUP_STAMP": str(stamp), "RUNS": str(tmp_path / "runs"),
                 "DATE": "2026-01-02", "SUBMISSION": str(tmp_path / "submission"),
                 "REPORTS": str(tmp_path / "reports")}
    proc = subprocess.run(["make", "-C", str(REPO), "-n", "overnight",
                           *[f"{k}={v}" for k, v in variables.items()]],
                          env=without_packages, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ImportError" not in proc.stdout + proc.stderr
    assert "jobs/windows.py" in proc.stdout and "jobs/report.py" in proc.stdout
    assert not (tmp_path / "runs").exists()
