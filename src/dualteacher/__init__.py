"""dualteacher: semi-supervised semantic segmentation with switching temporary teachers."""

from __future__ import annotations

from typing import Any

from dualteacher.logs import install_fallback

__version__ = "0.1.0"
"""The one place the version is written; the build reads it from here (pyproject.toml: dynamic version)."""
__all__ = ["load_model", "__version__"]

install_fallback()


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from dualteacher.inference.model import load_model

        return load_model
    raise AttributeError(f"module 'dualteacher' has no attribute {name!r}")
