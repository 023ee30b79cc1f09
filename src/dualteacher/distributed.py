"""Data-parallel plumbing for runs started by ``torchrun`` (gloo on CPU, NCCL on CUDA)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def local_rank() -> int:
    """This process's GPU index on its node (0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def setup() -> tuple[int, int]:
    """Join the process group torchrun describes in the environment; return (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def wrap(module: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel (with SyncBatchNorm on CUDA) when running data-parallel."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return module
    if device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        return nn.parallel.DistributedDataParallel(module, device_ids=[device.index])
    return nn.parallel.DistributedDataParallel(module)


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if dist.is_initialized():
        dist.barrier()


def reduce_device() -> torch.device:
    """Where small collective tensors live: the current GPU with NCCL, the CPU with gloo."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
