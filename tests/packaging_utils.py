"""Helpers for tests of the built package: build the wheel, make a fresh virtual environment with
torch, install the wheel there and run commands in it away from the repository.

The fixtures :func:`wheel` and :func:`installed_venv` are session-scoped and keep their results
under pytest's base temporary folder, so test modules that import them share one wheel and one
environment (``from packaging_utils import installed_venv, wheel``). Building, installing and
running are slow: mark the tests that use them ``@pytest.mark.slow``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints.txt"
SOURCE = ("pyproject.toml", "README.md", "LICENSE", "src")
"""What a wheel is built from (the rest of the repository is not packaged)."""

BUILD_SECONDS = 300
INSTALL_SECONDS = 900


def clean_env() -> dict[str, str]:
    """This process's environment without what would put the repository or another environment
    on a child's path (PYTHONPATH, PYTHONHOME, VIRTUAL_ENV)."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


def run(
    command: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    timeout: float = INSTALL_SECONDS,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with :func:`clean_env` updated by ``env``; on failure (``check``) raise an
    AssertionError holding its output."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env={**clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, command))} exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def copy_source(destination: Path, repo: Path = REPO) -> Path:
    """Copy what the wheel is built from (:data:`SOURCE`) to ``destination``, without caches
    and earlier build output; returns ``destination``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    destination.mkdir(parents=True, exist_ok=True)
    for name in SOURCE:
        path = repo / name
        if path.is_dir():
            shutil.copytree(path, destination / name, ignore=ignore)
        else:
            shutil.copy2(path, destination / name)
    return destination


def build_wheel(out: Path, source: Path | None = None) -> Path:
    """Build the wheel of ``source`` (default: a copy of the repository's :data:`SOURCE`, so that
    the repository gets no build/ or egg-info folder) into ``out``; returns the .whl path.

    Builds with this interpreter's setuptools (``--no-build-isolation``: offline; torch itself
    requires setuptools ≥ 77.0.3, the version pyproject.toml asks for)."""
    out.mkdir(parents=True, exist_ok=True)
    source = source or copy_source(out / "source")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            out / "dist",
            source,
        ],
        timeout=BUILD_SECONDS,
    )
    wheels = sorted((out / "dist").glob("dualteacher-*.whl"))
    assert len(wheels) == 1, f"expected one dualteacher wheel in {out / 'dist'}, found {wheels}"
    return wheels[0]


def venv_bin(venv: Path, name: str) -> Path:
    """The path of the program ``name`` (python, pip, dualteacher) inside ``venv``."""
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def fresh_venv(where: Path, constraints: Path = CONSTRAINTS) -> Path:
    """A new virtual environment at ``where`` holding only torch and torchvision at the versions
    of ``constraints`` (about 60-80 s from the local wheels); returns ``where``."""
    run([sys.executable, "-m", "venv", where], timeout=BUILD_SECONDS)
    run([venv_bin(where, "python"), "-m", "pip", "install", "--quiet", "-c", constraints, "torch", "torchvision"])
    return where


def install(venv: Path, *requirements: str | Path, constraints: Path = CONSTRAINTS) -> None:
    """``pip install -c constraints requirements...`` into ``venv`` (not editable)."""
    run([venv_bin(venv, "python"), "-m", "pip", "install", "--quiet", "-c", constraints, *requirements])


def once(folder: Path, make: Callable[[Path], object]) -> Path:
    """``make(folder)`` unless an earlier call finished it (its ``.done`` marker exists): lets
    fixtures imported into several test modules share one result per pytest session."""
    marker = folder / ".done"
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        make(folder)
        marker.touch()
    return folder


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The package's wheel, built once per session."""
    folder = once(tmp_path_factory.getbasetemp() / "packaging-wheel", build_wheel)
    return next((folder / "dist").glob("dualteacher-*.whl"))


@pytest.fixture(scope="session")
def installed_venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh virtual environment with torch from constraints.txt and the wheel installed (core
    dependencies only, no extras, not editable), made once per session."""

    def make(folder: Path) -> None:
        fresh_venv(folder)
        install(folder, wheel)

    return once(tmp_path_factory.getbasetemp() / "packaging-venv", make)
