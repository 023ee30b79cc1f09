"""dualteacher: semi-supervised semantic segmentation with switching temporary teachers.

The Python API (docs/python-api.md)::

    from dualteacher import compare, load_config, load_model, prepare_folder, train

Its names are imported on first use, so ``import dualteacher`` (and the ``dualteacher`` command's
``--help``) does not import PyTorch; a type checker sees them through the ``TYPE_CHECKING``
imports below, with their real signatures.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dualteacher.logs import install_fallback

if TYPE_CHECKING:
    from dualteacher.api import TrainResult, compare, train
    from dualteacher.config import Config, ConfigError, load_config
    from dualteacher.data.prepare import prepare_folder
    from dualteacher.experiments.compare import CompareOptions, Comparison
    from dualteacher.inference.model import LoadedModel, load_model

__version__ = "0.1.0"
"""The one place the version is written; the build reads it from here (pyproject.toml: dynamic version)."""

_LAZY = {
    "train": "dualteacher.api",
    "TrainResult": "dualteacher.api",
    "compare": "dualteacher.api",
    "CompareOptions": "dualteacher.experiments.compare",
    "Comparison": "dualteacher.experiments.compare",
    "load_model": "dualteacher.inference.model",
    "LoadedModel": "dualteacher.inference.model",
    "load_config": "dualteacher.config",
    "Config": "dualteacher.config",
    "ConfigError": "dualteacher.config",
    "prepare_folder": "dualteacher.data.prepare",
}
"""Public name -> the module that defines it, imported when the name is first used."""

__all__ = [
    "CompareOptions",
    "Comparison",
    "Config",
    "ConfigError",
    "LoadedModel",
    "TrainResult",
    "__version__",
    "compare",
    "load_config",
    "load_model",
    "prepare_folder",
    "train",
]

install_fallback()


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dualteacher' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next look-up finds it without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
