"""Data-parallel plumbing for runs started by ``torchrun`` (gloo on CPU, NCCL on CUDA)."""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist
from torch import nn

BACKEND_ENV = "DUALTEACHER_DIST_BACKEND"


def local_rank() -> int:
    """This process's index on its node (0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0))


def backend(device: torch.device) -> str:
    """The collective backend for a run on ``device``: ``$DUALTEACHER_DIST_BACKEND`` if set, else
    NCCL for CUDA and gloo for the CPU."""
    name = os.environ.get(BACKEND_ENV, "").strip().lower()
    if name and name not in ("nccl", "gloo"):
        raise ValueError(f"{BACKEND_ENV}={name!r}: expected 'nccl' or 'gloo'")
    if name == "nccl" and device.type != "cuda":
        raise RuntimeError(f"{BACKEND_ENV}=nccl needs a CUDA device, but this run trains on {device}")
    return name or ("nccl" if device.type == "cuda" else "gloo")


def gpu_index() -> int:
    """This process's GPU: its local rank, wrapped round the visible GPUs.

    Wrapping lets more processes than GPUs share them, which only the gloo backend allows; NCCL
    refuses two ranks on one GPU, so :func:`setup` stops such a run first with a clear message.
    """
    return local_rank() % max(1, torch.cuda.device_count())


def setup(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes in the environment, with the backend for
    ``device``; return (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        name = backend(device)
        if name == "nccl":
            per_node, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", 1)), torch.cuda.device_count()
            if per_node > gpus:
                raise RuntimeError(
                    f"torchrun started {per_node} processes on this node but only {gpus} GPU(s) are visible; "
                    f"NCCL needs one GPU per process: use --nproc_per_node={gpus}, or set {BACKEND_ENV}=gloo "
                    "to share GPUs (slower, for testing)"
                )
            torch.cuda.set_device(gpu_index())
        dist.init_process_group(name)
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


def is_distributed() -> bool:
    """True inside a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def average_buffers(module: nn.Module) -> None:
    """All-reduce-average the floating-point buffers (BatchNorm running statistics) over ranks.

    Without SyncBatchNorm (gloo on CPU) every rank's forward updates its running statistics from
    its own shard of the batch, so replicas drift apart; DDP only re-broadcasts rank 0's buffers
    at the start of the next forward, after the EMA teachers have already averaged the drifted
    ones. Averaging (rather than broadcasting rank 0's) keeps every rank's statistics in the
    estimate. One flattened all-reduce per call; integer buffers are left alone (they advance
    identically on every rank). No-op when not distributed.
    """
    if not is_distributed():
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.detach().reshape(-1).double() for b in buffers])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for b in buffers:
        b.copy_(flat[offset : offset + b.numel()].view_as(b))
        offset += b.numel()


def checksum(modules: dict[str, nn.Module]) -> dict[str, str]:
    """A SHA-256 of every parameter and buffer's bytes, per module name (bitwise identity)."""
    out = {}
    for name, module in modules.items():
        digest = hashlib.sha256()
        for key, tensor in module.state_dict().items():
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        out[name] = digest.hexdigest()
    return out


class ReplicaMismatch(RuntimeError):
    """Data-parallel replicas of a network are no longer bitwise identical."""


def verify_replicas(modules: dict[str, nn.Module]) -> None:
    """Raise :class:`ReplicaMismatch` on every rank if any named module differs between ranks.

    All ranks must call it (it all-gathers one checksum per module); a no-op when not
    distributed. Costs one copy of the weights to host memory and a hash, so call it at
    evaluation time, not every iteration.
    """
    if not is_distributed():
        return
    mine = checksum(modules)
    gathered: list[dict[str, str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    differ = sorted({name for other in gathered if other is not None for name in mine if other.get(name) != mine[name]})
    if differ:
        raise ReplicaMismatch(f"replicas differ across ranks for: {', '.join(differ)}")
