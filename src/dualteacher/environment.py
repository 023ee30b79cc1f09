"""The software and hardware a run trained on, kept with the run and with every checkpoint.

:func:`collect` describes this process: the versions of dualteacher, PyTorch, torchvision,
segmentation_models_pytorch, timm and Python, the git commit of the package when it runs from a
checkout, the devices, CUDA and cuDNN, the CPU threads, the world size and the command line. A
run keeps a list of such entries, each with the iteration it started at: a run resumed where
anything but the command line differs gets a second entry (:func:`continue_environments`). The
list is written to ``environment.json`` in the run directory and to the header of every
checkpoint (``"environments"``), where ``dualteacher eval`` and ``report`` show it
(:func:`describe`).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import dualteacher

FILE = "environment.json"
COMPARED_WITHOUT = frozenset({"iteration", "argv"})
"""Entry fields that do not make another environment: where it starts, and the command line."""
_PACKAGES = {"torchvision": "torchvision", "segmentation_models_pytorch": "segmentation-models-pytorch", "timm": "timm"}


def git_commit(folder: Path | None = None) -> str | None:
    """The commit checked out where ``folder`` (default: the package's own directory) is tracked
    by git; None when it is not in a checkout (an installed package), git is missing or slow."""
    folder = Path(dualteacher.__file__).parent if folder is None else folder
    try:
        tracked = subprocess.run(
            ["git", "-C", str(folder), "ls-files", "--error-unmatch", "__init__.py"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        if tracked.returncode != 0:  # e.g. site-packages inside some other repository
            return None
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = head.stdout.strip()
    return commit if head.returncode == 0 and commit else None


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what :mod:`platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _device_names(device: torch.device | None) -> list[str]:
    """The visible GPUs' names when the run uses CUDA, else the CPU's."""
    if device is not None and device.type == "cuda":
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return [_cpu_name()]


def _cudnn() -> int | None:
    try:
        return torch.backends.cudnn.version() if torch.cuda.is_available() else None
    except RuntimeError:
        return None


def collect(device: torch.device | None = None, world_size: int = 1) -> dict[str, Any]:
    """This process's environment (JSON-able): package versions, ``git_commit`` (None outside a
    checkout), ``device`` and ``device_names``, ``cuda`` and ``cudnn`` (None on a CPU run),
    ``threads`` (PyTorch's intra-op CPU threads), ``world_size`` and ``argv``. Never raises."""
    cuda = device is not None and device.type == "cuda"
    return {
        "dualteacher": dualteacher.__version__,
        "torch": torch.__version__,
        **{name: _version(distribution) for name, distribution in _PACKAGES.items()},
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "device": str(device) if device is not None else None,
        "device_names": _device_names(device),
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": _cudnn() if cuda else None,
        "threads": torch.get_num_threads(),
        "world_size": world_size,
        "argv": list(sys.argv),
    }


def entry(iteration: int, device: torch.device | None = None, world_size: int = 1) -> dict[str, Any]:
    """:func:`collect` as an entry of a run's list: from ``iteration`` on."""
    return {"iteration": iteration, **collect(device, world_size)}


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for each field (but :data:`COMPARED_WITHOUT`) that differs."""
    keys = [k for k in {**old, **new} if k not in COMPARED_WITHOUT]
    return {k: [old.get(k), new.get(k)] for k in keys if old.get(k) != new.get(k)}


def continue_environments(
    stored: list[dict[str, Any]], current: dict[str, Any], iteration: int
) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
    """The list of a run resumed at ``iteration`` in the environment ``current``: ``stored`` (a
    checkpoint's list), plus ``current`` from ``iteration`` on when it differs from the last
    entry (or ``stored`` is empty: a checkpoint from before environments were recorded); and
    the differences (empty: none, or nothing to compare with)."""
    if not stored:
        return [{**current, "iteration": iteration}], {}
    changes = differences(stored[-1], current)
    if not changes:
        return list(stored), {}
    return [*stored, {**current, "iteration": iteration}], changes


def write_environments(run_dir: Path, entries: list[dict[str, Any]]) -> Path:
    """Write ``run_dir/environment.json``: ``{"environments": entries}``; its path."""
    path = Path(run_dir) / FILE
    path.write_text(json.dumps({"environments": entries}, indent=1) + "\n")
    return path


def read_environments(run_dir: Path) -> list[dict[str, Any]]:
    """The entries of ``run_dir/environment.json`` (empty when there is none: an older run)."""
    path = Path(run_dir) / FILE
    return json.loads(path.read_text())["environments"] if path.is_file() else []


def describe(entries: list[dict[str, Any]] | None) -> list[str]:
    """Lines for people: per entry its versions, commit, devices and command line."""
    if not entries:
        return ["environment: not recorded (written by a dualteacher older than environment records)"]
    lines = []
    for e in entries:
        commit = f" (git {e['git_commit'][:12]})" if e.get("git_commit") else ""
        versions = ", ".join(f"{name} {e.get(name)}" for name in ("torch", *_PACKAGES))
        gpu = f", CUDA {e['cuda']}, cuDNN {e['cudnn']}" if e.get("cuda") else ""
        devices = ", ".join(e.get("device_names") or []) or "?"
        head = f"environment from iteration {e.get('iteration', 0)}: dualteacher {e.get('dualteacher')}{commit}"
        lines += [
            f"{head}, {versions}, Python {e.get('python')}",
            f"  {e.get('device')} ({devices}){gpu}, {e.get('threads')} threads, world size {e.get('world_size')}",
            f"  command: {' '.join(e.get('argv') or [])}",
        ]
    return lines
