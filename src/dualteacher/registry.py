"""Every extension point by name: training methods, dataset layouts, networks, mixings,
pseudo-label threshold modes, evaluation modes and experiment trackers.

A registry maps each name to its implementation, written as ``"module:attribute"`` so that the
names are known (configuration checks, command-line choices) without importing PyTorch; the
implementation is imported on first use. The names are typed here and nowhere else:
configuration checks, the command line, the recipe, the comparison and the tests read them
from these registries. A new entry is one line below, or, from your own code in the same
process, ``METHODS.register("my_method", MyMethod)``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Registry:
    """The names of one extension point, each mapped to an object or to ``"module:attribute"``."""

    def __init__(self, kind: str, entries: dict[str, Any]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<{self.kind} registry: {', '.join(self)}>"

    def get(self, name: str) -> Any:
        """The implementation registered as ``name``, imported on first use; ValueError for an unknown name."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose from {', '.join(self)}")
        target = self._entries[name]
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            target = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return target

    def name_of(self, target: object) -> str | None:
        """The name ``target`` is registered under (None when it is not registered)."""
        return next((name for name in self if self.get(name) is target), None)

    def register(self, name: str, target: Any) -> None:
        """Add ``name`` for ``target`` (an object or ``"module:attribute"``); a name is taken once."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = target

    @contextmanager
    def registered(self, name: str, target: Any) -> Iterator[None]:
        """``name`` registered for ``target`` inside the ``with`` block only (tests, experiments)."""
        self.register(name, target)
        try:
            yield
        finally:
            del self._entries[name]


METHODS = Registry("method", {
    "supervised": "dualteacher.methods.supervised:Supervised",
    "mean_teacher": "dualteacher.methods.mean_teacher:MeanTeacher",
    "dual_teacher": "dualteacher.methods.dual_teacher:DualTeacher",
    "fixmatch": "dualteacher.methods.fixmatch:FixMatch",
    "unimatch": "dualteacher.methods.unimatch:UniMatch",
})
"""``method.name`` -> :class:`~dualteacher.methods.base.Method` subclass."""

DATASETS = Registry("dataset", {
    "folder": "dualteacher.data.folder:FolderSource",
    "voc": "dualteacher.data.standard:VOC",
    "voc_aug": "dualteacher.data.standard:VOCAug",
    "cityscapes": "dualteacher.data.standard:Cityscapes",
    "ade20k": "dualteacher.data.standard:ADE20K",
})
"""``data.dataset`` -> :class:`~dualteacher.data.source.DataSource` subclass."""

NETWORKS = Registry("network", {})
"""``model.arch`` -> :class:`~dualteacher.models.contract.NetworkBuilder` of a network not from
segmentation_models_pytorch (a :class:`~dualteacher.models.contract.SegmentationNetwork`); looked up before
the SMP architectures, which are ``models.ARCHITECTURES``."""

MIXINGS = Registry("mixing", {
    "cutmix": "dualteacher.semi.mixing:cutmix",
    "classmix": "dualteacher.semi.mixing:classmix",
    "none": "dualteacher.semi.mixing:no_mixing",
})
"""``method.mixings`` -> mixing-mask function (:class:`~dualteacher.semi.mixing.MixMask`)."""

THRESHOLD_MODES = Registry("threshold mode", {
    "pixel": "dualteacher.semi.losses:pixel_weights",
    "fraction": "dualteacher.semi.losses:fraction_weights",
    "none": "dualteacher.semi.losses:valid_weights",
})
"""``method.threshold_mode`` -> per-pixel weights of the pseudo-label loss (:func:`~dualteacher.semi.losses.pseudo_label_loss`)."""

EVAL_MODES = Registry("evaluation mode", {
    "whole": "dualteacher.inference.modes:WHOLE",
    "center": "dualteacher.inference.modes:CENTER",
    "slide": "dualteacher.inference.modes:SLIDE",
})
"""``data.eval_mode`` -> :class:`~dualteacher.inference.modes.EvalMode`."""

TRACKERS = Registry("tracker", {
    "tensorboard": "dualteacher.training.trackers:TensorBoardTracker",
    "csv": "dualteacher.training.trackers:CsvTracker",
    "mlflow": "dualteacher.training.trackers:MlflowTracker",
    "wandb": "dualteacher.training.trackers:WandbTracker",
})
"""``train.loggers`` -> :class:`~dualteacher.training.trackers.Tracker` class (``csv`` always runs)."""
