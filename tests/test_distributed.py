"""Data-parallel training under torchrun: two gloo processes on the CPU train the baseline,
survive the SIGKILL of one rank by resuming, and land where one process does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from overnight.atomic import read_json_lines
from overnight.config import SynthConfig, WindowsConfig, load_config
from overnight.evaluation import load_trained_model, nrmse, predict
from overnight.night.processes import descendants
from overnight.training.fit import train_model
from overnight.windows.cache import load_windows
from overnight.windows.split import read_split
from tests.conftest import TinyNight

REPO = Path(__file__).resolve().parents[1]
SETTINGS = """
[train]
ensemble = 1
max_epochs = 10
patience = 10
n_filters = 16
lr = 0.003
batch_size = 32
device = "cpu"
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TinyNight:
    """Enough subjects that the baseline learns something in a few epochs (the session's
    tiny dataset predicts the mean, which any two runs agree on)."""
    from overnight.hbn.synth import generate_dataset
    from overnight.windows.build import build_window_cache
    from overnight.windows.split import write_split

    root = tmp_path_factory.mktemp("ddp")
    generate_dataset(root / "bids", SynthConfig(n_subjects=16, runs_per_subject=2,
                                                trials_per_run=30, seed=3), progress=False)
    cfg = WindowsConfig(val_fraction=0.25)
    build_window_cache(root / "bids", root / "windows.h5", cfg, progress=False)
    write_split(root / "windows.h5", root / "split.json", cfg)
    return TinyNight(root / "bids", root / "windows.h5", root / "split.json", root / "none",
                     root / "models")


def _torchrun(config: Path, tiny_data, out: Path, nproc: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
         str(nproc), "jobs/train.py", "--config", str(config), "--model", "baseline",
         "--windows", str(tiny_data.windows), "--split", str(tiny_data.split), "--out",
         str(out)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"})


def _rank_pid(launcher: int, rank: int) -> int:
    for pid in descendants(launcher):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ and b"jobs/train.py" in Path(
                f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise AssertionError(f"no rank {rank} below {launcher}")


@pytest.mark.slow  # a minute on two cores (torchrun, two ranks, a kill and a resume): make test-all
def test_two_gloo_processes_train_resume_and_match_one(data, tmp_path):
    tiny_data = data
    config = tmp_path / "train.toml"
    config.write_text(SETTINGS)
    out = tmp_path / "ddp"

    # 1. two processes; SIGKILL rank 1 once an epoch is done: torchrun stops the other
    first = _torchrun(config, tiny_data, out, 2)
    deadline = time.monotonic() + 120
    while not read_json_lines(out / "history.jsonl"):
        assert first.poll() is None, first.stdout.read()[-3000:]
        assert time.monotonic() < deadline, "no epoch within 120 s"
        time.sleep(0.1)
    os.kill(_rank_pid(first.pid, 1), signal.SIGKILL)
    assert first.wait(timeout=120) != 0
    assert not (out / "model.json").exists()

    # 2. the rerun resumes after the last finished epoch and finishes
    second = _torchrun(config, tiny_data, out, 2)
    log = second.communicate(timeout=300)[0]
    assert second.returncode == 0, log[-3000:]
    assert "resuming after epoch" in log
    epochs = [row["epoch"] for row in read_json_lines(out / "history.jsonl")]
    assert epochs == list(range(1, len(epochs) + 1))
    meta = json.loads((out / "model.json").read_text())
    assert (meta["world_size"], meta["batch_per_process"], meta["effective_batch"]) == (2, 16, 32)

    # 3. the same effective batch in one process, three seeds: the spread to land in
    cfg = load_config(config).train
    singles = [train_model("baseline", tiny_data.windows, tiny_data.split,
                           tmp_path / f"seed{seed}",
                           cfg.__class__(**{**cfg.__dict__, "seed": seed}))["best_tune_nrmse"]
               for seed in range(3)]
    tune = load_windows(tiny_data.windows, read_split(tiny_data.split)["tune"])
    model, _ = load_trained_model(out)
    ddp = nrmse(tune.rt, predict(model, tune.eeg))
    assert ddp == pytest.approx(meta["best_tune_nrmse"], rel=1e-5)
    print(f"DDP {ddp:.4f}, one process {singles}")
    assert min(singles) - np.ptp(singles) <= ddp <= max(singles) + np.ptp(singles)
