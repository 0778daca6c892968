"""Where training runs and in which precision, and how many windows may live there."""

from __future__ import annotations

import torch

from overnight.config import TrainConfig


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the GPU (CUDA or ROCm) when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but no GPU is visible to torch")
    return device


def resolve_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast where the GPU supports it (and ``precision`` allows it), else None."""
    if precision == "fp32" or device.type != "cuda":
        if precision == "bf16":
            raise ValueError("train.precision='bf16' needs a GPU; use 'auto' or 'fp32'")
        return None
    if not torch.cuda.is_bf16_supported():
        if precision == "bf16":
            raise ValueError("train.precision='bf16' but this GPU does not support bf16")
        return None
    return torch.bfloat16


def memory_budget(device: torch.device, cfg: TrainConfig) -> float:
    """Bytes of windows that may live on the device (the host, for CPU training)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.6 * free
    return cfg.host_cache_gb * 1e9
