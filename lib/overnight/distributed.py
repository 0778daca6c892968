"""Data-parallel training across processes and nodes, as ``torchrun`` starts them.

``torchrun`` (``python -m torch.distributed.run``) starts one process per GPU (or per share
of the CPU) and tells each its place in ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. Without
them there is one process and nothing here does anything. The backend follows the device:
NCCL on GPUs (RCCL on ROCm, through the same name), gloo on the CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

# The other ranks wait in a collective while rank 0 validates a large, streamed validation
# side: far longer than torch's default of 10 minutes must not kill the run.
COLLECTIVE_TIMEOUT_MIN = 120


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0  # across every node
    size: int = 1
    local_rank: int = 0  # on this node: which GPU

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, decides and writes every file."""
        return self.rank == 0


ONE_PROCESS = World()


def world() -> World:
    """The world ``torchrun`` set up in the environment, or one process."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def device_for(device: torch.device, here: World) -> torch.device:
    """Each process its own GPU on its node; the CPU is shared."""
    if device.type == "cuda" and here.size > 1:
        if here.local_rank >= torch.cuda.device_count():
            raise ValueError(f"process {here.local_rank} of this node has no GPU: "
                             f"{torch.cuda.device_count()} visible; set NPROC to at most "
                             "that (and leave GPUS unset)")
        device = torch.device("cuda", here.local_rank)
        torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def process_group(here: World, device: torch.device) -> Iterator[None]:
    """Join the other processes for the block (nothing to join for one process, or when an
    enclosing block already did)."""
    if here.size == 1 or dist.is_initialized():
        yield
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            timeout=datetime.timedelta(minutes=COLLECTIVE_TIMEOUT_MIN))
    try:
        yield
    finally:
        dist.destroy_process_group()


def broadcast(value: Any, here: World) -> Any:
    """Rank 0's ``value`` on every rank (a decision taken once)."""
    if here.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_across(tensor: torch.Tensor, here: World) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over every rank (in place, and returned)."""
    if here.size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def min_across(value: float, here: World, device: torch.device) -> float:
    """The smallest ``value`` of any rank (a decision every rank must take alike)."""
    if here.size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return float(tensor.item())


def barrier(here: World) -> None:
    if here.size > 1:
        dist.barrier()


def data_parallel(module: torch.nn.Module, device: torch.device,
                  here: World) -> torch.nn.Module:
    """``module`` whose gradients DDP averages over the ranks (itself for one process)."""
    if here.size == 1:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids)
