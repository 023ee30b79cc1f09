"""Checkpoints as one safetensors file: tensors in the body, run state as JSON in its header.

Nothing is ever unpickled. Writes go to a temporary file in the same directory, are flushed
and fsynced, then renamed over the target, so a crash mid-write leaves the previous file
intact. A SHA-256 of the tensor payload is stored and verified on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

FORMAT_VERSION = 1
_STATE_KEY = "dualteacher_state"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted or not one of ours; the message names it."""


def _digest(tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a fsynced temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(path: str | Path, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
    """Atomically write ``tensors`` (moved to CPU) and JSON-serialisable ``state``."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {"format": FORMAT_VERSION, "sha256": _digest(cpu), "state": state}
    data = st_save(cpu, metadata={_STATE_KEY: json.dumps(header)})
    atomic_write_bytes(Path(path), data)


def load_checkpoint(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_len]).get("__metadata__", {})
        header = json.loads(metadata[_STATE_KEY])
    except (SafetensorError, ValueError, KeyError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint {path} is truncated or not a dualteacher checkpoint: {err}") from err
    if header.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has unsupported format {header.get('format')!r}")
    if _digest(tensors) != header.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupted: its weights do not match the stored checksum")
    return tensors, header["state"]


def module_tensors(prefix: str, module: nn.Module) -> dict[str, Tensor]:
    """A module's state dict with every key under ``prefix/``."""
    return {f"{prefix}/{k}": v for k, v in module.state_dict().items()}


def load_module(module: nn.Module, tensors: dict[str, Tensor], prefix: str) -> None:
    """Load the ``prefix/`` entries of ``tensors`` into ``module`` (strict).

    Raises :class:`CheckpointError` when there are none, or when their names or shapes do not
    fit ``module`` (a network built with other settings).
    """
    head = f"{prefix}/"
    sub = {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}
    if not sub:
        raise CheckpointError(f"checkpoint holds no weights for {prefix!r}")
    try:
        module.load_state_dict(sub, strict=True)
    except RuntimeError as err:
        raise CheckpointError(
            f"the checkpoint's {prefix!r} weights do not fit the network built from the settings: {err}"
        ) from err


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON-able rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in sd["state"].items():
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optim/{pid}/{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, entries in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    optimizer.load_state_dict({"state": dict(sorted(state.items())), "param_groups": meta["param_groups"]})


STAGED = ".next.safetensors"


def rotation(run_dir: Path, keep: int) -> list[Path]:
    """Training checkpoints of a run, newest first: ``last``, ``last-1``, … ``last-(keep-1)``."""
    return [run_dir / ("last.safetensors" if i == 0 else f"last-{i}.safetensors") for i in range(keep)]


def save_rotating(run_dir: Path, tensors: dict[str, Tensor], state: dict[str, Any], keep: int) -> Path:
    """Write a new ``last.safetensors``, keeping the previous ``keep - 1`` as ``last-1`` … .

    The new file is complete on disk (as ``.next.safetensors``) before any rename; a crash
    between the renames leaves every file whole, and :func:`load_latest` looks at the staged
    file first.
    """
    paths = rotation(run_dir, keep)
    staged = run_dir / STAGED
    save_checkpoint(staged, tensors, state)
    for older, newer in zip(reversed(paths[1:]), reversed(paths[:-1])):
        if newer.exists():
            os.replace(newer, older)
    os.replace(staged, paths[0])
    return paths[0]


def load_latest(
    run_dir: Path, keep: int, warn: Callable[[str], None]
) -> tuple[Path, dict[str, Tensor], dict[str, Any]] | None:
    """The newest training checkpoint that loads and verifies; bad ones are reported and skipped."""
    for path in [run_dir / STAGED, *rotation(run_dir, max(keep, 1))]:
        if not path.exists():
            continue
        try:
            tensors, state = load_checkpoint(path)
        except CheckpointError as err:
            warn(f"skipping {path.name}: {err}")
            continue
        return path, tensors, state
    return None
