"""Warm start (``method.init_from``): every network of a run starts from one network of an
earlier run's checkpoint instead of the encoder's pretrained weights and a random head.

The semi-supervised protocol with a supervised warm start (issue 13 of this project; the usual
practice of starting self-training from a supervised model, e.g. Noisy Student and ST++): a
supervised run on the labelled split first, then every method (supervised continued, Mean
Teacher, Dual Teacher, ...) from its final student, its teachers included, so that no
method's first pseudo-labels come from an untrained head. The warm-up's time belongs in every
wall-clock figure (:mod:`dualteacher.experiments.demo` and ``dualteacher compare`` add it). The checkpoint
is read whenever the run is built, a resumed one included, so it must stay where it is until
the run ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from dualteacher.checkpoint import CheckpointError, load_checkpoint, load_module
from dualteacher.config import ConfigError, ModelConfig, config_from_dict
from dualteacher.models.contract import Normalization

ARCHITECTURE_KEYS = ("arch", "encoder", "output_stride", "decoder_channels")
"""The ``model`` settings that decide the shape of the weights (the input normalisation is
checked separately; dropout and the pretrained weights' name may differ)."""


@dataclass(frozen=True)
class WarmStart:
    """One network's weights read from ``path`` (its ``prefix/`` entries of ``tensors``)."""

    path: Path
    tensors: dict[str, Tensor]
    prefix: str

    def load_into(self, network: nn.Module) -> None:
        """Copy the weights into ``network`` (strict). Raises :class:`CheckpointError` naming
        the file when they do not fit it."""
        try:
            load_module(network, self.tensors, self.prefix)
        except CheckpointError as err:
            raise CheckpointError(f"method.init_from {self.path}: {err}") from err


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself, or a run directory's final training checkpoint ``last.safetensors``."""
    path = Path(path)
    return path / "last.safetensors" if path.is_dir() else path


def read_warm_start(path: str | Path, model: ModelConfig, classes: Sequence[str], norm: Normalization) -> WarmStart:
    """The student of a finished run's training checkpoint, or the one network of a
    ``best.safetensors``, at ``path`` (a file or a run directory), checked against the run's
    ``model`` settings, class names and input normalisation ``norm`` (mean, std).

    Raises :class:`CheckpointError` naming the file when it is missing, unreadable, from a run
    that has not finished, holds other classes, was trained with another architecture (the
    :data:`ARCHITECTURE_KEYS` settings) or on inputs normalised otherwise.
    """
    file = checkpoint_file(path)
    try:
        tensors, state = load_checkpoint(file)
        saved = config_from_dict(state["config"]).model
    except (CheckpointError, ConfigError, KeyError) as err:
        raise CheckpointError(f"method.init_from {file}: {err}") from err
    if state["kind"] != "model" and state["iteration"] < state["schedule"]["total_iters"]:
        raise CheckpointError(
            f"method.init_from {file}: its run stopped at iteration {state['iteration']} of "
            f"{state['schedule']['total_iters']}; finish it first (or name its best.safetensors)"
        )
    if list(state["classes"]) != list(classes):
        raise CheckpointError(
            f"method.init_from {file}: its classes {state['classes']} are not the data's {list(classes)}"
        )
    for key in ARCHITECTURE_KEYS:
        if getattr(saved, key) != getattr(model, key):
            raise CheckpointError(
                f"method.init_from {file}: trained with model.{key}={getattr(saved, key)!r}, "
                f"this run has {getattr(model, key)!r}"
            )
    mean, std = norm
    if [list(state["mean"]), list(state["std"])] != [list(mean), list(std)]:
        raise CheckpointError(
            f"method.init_from {file}: trained on inputs normalised with mean {state['mean']}, "
            f"std {state['std']}; this run uses {list(mean)}, {list(std)}"
        )
    prefix = "model" if state["kind"] == "model" else "model/student"
    return WarmStart(file, tensors, prefix)
