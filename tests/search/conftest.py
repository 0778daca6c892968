"""What the search's tests share: a tiny config, the search job as a subprocess, and the
study a test left, read back through Optuna."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from overnight.config import Config, load_config

REPO = Path(__file__).resolve().parents[2]
# Tiny trials (two epochs of at most 3 x 64 filters on the 6-subject fixture), a search
# that runs on the CPU, two random trials before TPE, the pruner after two complete ones.
SEARCH_TOML = """
[train]
ensemble = 1
max_epochs = 2
patience = 2
batch_size = 32
device = "cpu"
[search]
on_cpu = true
budget_min = 5
startup_trials = 2
pruner_startup_trials = 2
pruner_warmup_epochs = 1
"""


@pytest.fixture
def search_config(tmp_path: Path) -> tuple[Path, Config]:
    """The tiny search settings as a file (for the job) and as a Config."""
    path = tmp_path / "search.toml"
    path.write_text(SEARCH_TOML)
    return path, load_config(path)


def job_command(config_path: Path, night, studies: Path, records: Path,
                *extra: str) -> list[str]:
    """The search job's command on the tiny night (``tests/conftest.py``'s fixture)."""
    return [sys.executable, str(REPO / "jobs" / "search.py"), "--config", str(config_path),
            "--windows", str(night.windows), "--split", str(night.split), "--features",
            str(night.features), "--studies", str(studies), "--records", str(records),
            "--out", str(records.parent / "models" / "search"), *extra]


def run_job(command: list[str], timeout: float = 300, **env: str) -> str:
    """Run a command to its end; its output. A failure fails the test with the output."""
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env}, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def the_study(studies: Path) -> optuna.Study:
    """The one study in ``studies`` (a journal), loaded afresh."""
    (journal,) = studies.glob("*/journal.log")
    return optuna.load_study(study_name=journal.parent.name, storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
