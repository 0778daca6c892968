"""The Slurm recipe of docs/SCALING.md: its scripts, run with fake scontrol and srun and
MAKE_FLAGS=-n, hand make the commands a cluster would run."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAKES = {
    "scontrol": '#!/bin/sh\nprintf "node-a\\nnode-b\\n"\n',
    # srun: drop its options, run the task once per node with that node's SLURM_NODEID
    "srun": '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\n'
            'for id in 0 1; do SLURM_NODEID=$id "$@" || exit 1; done\n',
}


def _run(script: str, tmp_path: Path, **env: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in FAKES.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(stat.S_IRWXU)
    (tmp_path / "setup-done").touch()
    variables = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MAKE_FLAGS": "-n",
                 "VENV": sys.prefix, "SETUP_STAMP": str(tmp_path / "setup-done"), **env}
    proc = subprocess.run(["bash", f"scripts/slurm/{script}"], cwd=REPO, env=variables,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout


def test_the_array_task_builds_its_release_cache(tmp_path):
    out = _run("windows.sbatch", tmp_path, RELEASES="/data/R1_L100 /data/R2_L100",
               PARTS=str(tmp_path / "parts"), SLURM_ARRAY_TASK_ID="1",
               SLURM_CPUS_PER_TASK="16")
    assert "jobs/windows.py" in out and "--bids-root /data/R2_L100" in out
    assert f"--out {tmp_path}/parts/R2_L100/windows.h5" in out
    assert "--set windows.workers=16" in out


def test_the_training_task_runs_torchrun_on_every_node(tmp_path):
    out = _run("train.sbatch", tmp_path, MODEL="hybrid", WORK=str(tmp_path / "night"),
               SLURM_JOB_NODELIST="node-[a-b]", SLURM_NNODES="2", SLURM_GPUS_ON_NODE="4")
    lines = [line for line in out.splitlines() if "torch.distributed.run" in line]
    assert len(lines) == 2  # one per node
    for rank, line in enumerate(lines):
        assert "--nproc-per-node 4 --nnodes 2" in line and f"--node-rank {rank}" in line
        assert "--rdzv-backend c10d --rdzv-endpoint node-a:29400" in line
        assert "jobs/train.py" in line and "--model hybrid" in line


def test_the_search_task_runs_one_worker_per_gpu_on_every_node(tmp_path):
    url = "postgresql://me:s3cret@db:5432/optuna"
    out = _run("search.sbatch", tmp_path, WORK=str(tmp_path / "night"), SEARCH_MIN="420",
               SEARCH_STORAGE=url, SEARCH_DIR=str(tmp_path / "studies"),
               SLURM_GPUS_ON_NODE="4")
    lines = [line for line in out.splitlines() if "jobs/search.py" in line]
    assert len(lines) == 2  # one per node
    for line in lines:
        assert "--workers-only" in line and "--gpus 0,1,2,3" in line
        assert f"--studies {tmp_path}/studies" in line
        assert f"--windows {tmp_path}/night/windows.h5" in line
        assert "--set search.budget_min=420" in line
    assert "s3cret" not in out  # the URL travels in the environment only


def test_the_search_task_needs_the_shared_storage(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SEARCH_STORAGE"}
    proc = subprocess.run(["bash", "scripts/slurm/search.sbatch"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0 and "set SEARCH_STORAGE=postgresql://" in proc.stderr
