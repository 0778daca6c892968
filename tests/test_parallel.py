"""One model per GPU: make -j2 trains two models at once, each pinned to its own GPU (here
placeholders on the CPU), with the same results as one after the other."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
[train]
ensemble = 1
max_epochs = 3
patience = 3
n_filters = 8
batch_size = 32
device = "cpu"
"""


def _night(tmp_path: Path, name: str, tiny_data) -> dict[str, str]:
    work = tmp_path / name
    work.mkdir()
    for source in (tiny_data.windows, tiny_data.split):  # newer than DATA: make keeps them
        shutil.copyfile(source, work / source.name)
    (tmp_path / "night.toml").write_text(CONFIG)
    (tmp_path / "setup-done").touch()
    return {**os.environ, "VENV": sys.prefix, "SETUP_STAMP": str(tmp_path / "setup-done"),
            "DATA": str(tiny_data.bids_root), "CONFIG": str(tmp_path / "night.toml"),
            "WORK": str(work)}


def _status(env: dict[str, str], stage: str) -> dict:
    return json.loads((Path(env["WORK"]) / "status" / f"{stage}.json").read_text())


def _make(env: dict[str, str], *args: str) -> None:
    proc = subprocess.run(["make", "-C", str(REPO), "--no-print-directory", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_make_j2_trains_two_models_at_once_on_their_own_gpus(tiny_data, tmp_path):
    models = ("train-baseline", "train-press")
    parallel = _night(tmp_path, "parallel", tiny_data)
    _make(parallel, "-j2", *models, "GPUS=gpu-a,gpu-b")
    serial = _night(tmp_path, "serial", tiny_data)
    _make(serial, *models)

    spans = [(datetime.fromisoformat(_status(parallel, s)["start"]),
              datetime.fromisoformat(_status(parallel, s)["end"])) for s in models]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # they overlapped
    pins = {(Path(parallel["WORK"]) / "logs" / f"{s}.log").read_text()
            .split("pinned to GPU ", 1)[1].split(" ", 1)[0] for s in models}
    assert pins == {"gpu-a", "gpu-b"}
    for stage in models:
        name = stage.removeprefix("train-")
        together, alone = (json.loads((Path(env["WORK"]) / "models" / name / "model.json")
                                      .read_text()) for env in (parallel, serial))
        assert together["best_tune_nrmse"] == pytest.approx(alone["best_tune_nrmse"], rel=1e-6)
        assert together["best_epoch"] == alone["best_epoch"]
