"""Every extension point by name: training methods, dataset layouts, networks, mixings,
pseudo-label threshold modes, evaluation modes and experiment trackers.

A registry maps each name to its implementation, written as ``"module:attribute"`` so that the
names are known (configuration checks, command-line choices) without importing PyTorch; the
implementation is imported on first use. The names are typed here and nowhere else:
configuration checks, the command line, the recipe, the comparison and the tests read them
from these registries. A new entry is one line below, or, from your own code in the same
process, ``METHODS.register("my_method", MyMethod)``.

An installed package adds entries without editing this file by declaring Python entry points
in the registry's group (:data:`ENTRY_POINT_GROUPS`), e.g. in its ``pyproject.toml``::

    [project.entry-points."dualteacher.methods"]
    my_method = "my_package.my_method:MyMethod"

Their names are read from the installed packages' metadata the first time a registry's names
are asked for (nothing is imported then); a name is imported on first use, as the built-in
ones are, and :class:`PluginError` says which package's entry point failed to load.
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from importlib.metadata import EntryPoint, entry_points
from typing import Any

SUGGESTION_CUTOFF = 0.7
"""Similarity (:class:`difflib.SequenceMatcher` ratio) a known word needs to be suggested for a
mistyped one: ``epohcs`` -> ``epochs`` (0.83), ``bf61`` -> ``bf16`` (0.75), but not
``icl_weight`` -> ``unsup_weight`` (0.64)."""


def did_you_mean(word: str, known: Iterable[str], prefix: str = "") -> str:
    """``"did you mean PREFIX+X?"`` for the known word X closest to ``word`` (see
    :data:`SUGGESTION_CUTOFF`), or ``""`` when none is close."""
    match = difflib.get_close_matches(word, list(known), n=1, cutoff=SUGGESTION_CUTOFF)
    return f"did you mean {prefix}{match[0]}?" if match else ""


class PluginError(ImportError):
    """An entry point of an installed package that registers a name failed to load."""


class Registry:
    """The names of one extension point, each mapped to an object or to ``"module:attribute"``,
    plus those that installed packages declare in the entry-point ``group`` (if any)."""

    def __init__(self, kind: str, entries: dict[str, Any], group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._entries = dict(entries)
        self._plugins: dict[str, EntryPoint] = {}
        self._discovered = False

    def _discover(self) -> None:
        """Add the entry points of :attr:`group` once (their names only; nothing is imported). A
        name that is already taken keeps its first owner and the clash is warned about."""
        if self._discovered or self.group is None:
            return
        self._discovered = True
        for point in entry_points(group=self.group):
            if point.name in self._entries:
                owner = self._plugins.get(point.name)
                first = f"the entry point of {_distribution(owner)}" if owner else "dualteacher"
                warnings.warn(
                    f"{_distribution(point)} declares {self.kind} {point.name!r} (entry point group "
                    f"{self.group}), which {first} registers already; ignoring it",
                    RuntimeWarning,
                    stacklevel=3,
                )
                continue
            self._entries[point.name] = point.value
            self._plugins[point.name] = point

    def __iter__(self) -> Iterator[str]:
        self._discover()
        return iter(list(self._entries))

    def __contains__(self, name: object) -> bool:
        self._discover()
        return name in self._entries

    def __len__(self) -> int:
        self._discover()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<{self.kind} registry: {', '.join(self)}>"

    def get(self, name: str) -> Any:
        """The implementation registered as ``name``, imported on first use.

        Raises ValueError for an unknown name (suggesting the nearest) and :class:`PluginError`
        when an installed package's entry point for ``name`` fails to import.
        """
        if name not in self:
            hint = did_you_mean(name, self)
            raise ValueError(f"unknown {self.kind} {name!r}; {hint + ' ' if hint else ''}choose from {', '.join(self)}")
        target = self._entries[name]
        if isinstance(target, str):
            target = self._entries[name] = self._load(name, target)
        return target

    def _load(self, name: str, target: str) -> Any:
        """Import ``"module:attribute"``; a failure of an entry point becomes a :class:`PluginError`."""
        module, _, attribute = target.partition(":")
        if name not in self._plugins:
            return getattr(importlib.import_module(module), attribute)
        point = self._plugins[name]
        try:
            return point.load()
        except Exception as err:
            raise PluginError(
                f"{self.kind} {name!r} is registered by the entry point '{point.name} = {point.value}' (group "
                f"{self.group}) of {_distribution(point)}, which failed to load: {type(err).__name__}: {err}; "
                f"fix that package or uninstall it"
            ) from err

    def name_of(self, target: object) -> str | None:
        """The name ``target`` is registered under (None when it is not registered)."""
        return next((name for name in self if self.get(name) is target), None)

    def register(self, name: str, target: Any) -> None:
        """Add ``name`` for ``target`` (an object or ``"module:attribute"``); a name is taken once."""
        if name in self:
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


def _distribution(point: EntryPoint | None) -> str:
    """``"the package NAME VERSION"`` that declares ``point`` (as far as its metadata says)."""
    dist = getattr(point, "dist", None)
    return f"the package {dist.name} {dist.version}" if dist is not None else "an installed package"


METHODS = Registry(
    "method",
    group="dualteacher.methods",
    entries={
        "supervised": "dualteacher.methods.supervised:Supervised",
        "mean_teacher": "dualteacher.methods.mean_teacher:MeanTeacher",
        "dual_teacher": "dualteacher.methods.dual_teacher:DualTeacher",
        "fixmatch": "dualteacher.methods.fixmatch:FixMatch",
        "unimatch": "dualteacher.methods.unimatch:UniMatch",
    },
)
"""``method.name`` -> :class:`~dualteacher.methods.base.Method` subclass."""

DATASETS = Registry(
    "dataset",
    group="dualteacher.datasets",
    entries={
        "folder": "dualteacher.data.folder:FolderSource",
        "voc": "dualteacher.data.standard:VOC",
        "voc_aug": "dualteacher.data.standard:VOCAug",
        "cityscapes": "dualteacher.data.standard:Cityscapes",
        "ade20k": "dualteacher.data.standard:ADE20K",
    },
)
"""``data.dataset`` -> :class:`~dualteacher.data.source.DataSource` subclass."""

NETWORKS = Registry("network", group="dualteacher.networks", entries={})
"""``model.arch`` -> :class:`~dualteacher.models.contract.NetworkBuilder` of a network not from
segmentation_models_pytorch (a :class:`~dualteacher.models.contract.SegmentationNetwork`); looked up before
the SMP architectures, which are ``models.ARCHITECTURES``."""

MIXINGS = Registry(
    "mixing",
    group="dualteacher.mixings",
    entries={
        "cutmix": "dualteacher.semi.mixing:cutmix",
        "classmix": "dualteacher.semi.mixing:classmix",
        "none": "dualteacher.semi.mixing:no_mixing",
    },
)
"""``method.mixings`` -> mixing-mask function (:class:`~dualteacher.semi.mixing.MixMask`)."""

THRESHOLD_MODES = Registry(
    "threshold mode",
    group="dualteacher.threshold_modes",
    entries={
        "pixel": "dualteacher.semi.losses:pixel_weights",
        "fraction": "dualteacher.semi.losses:fraction_weights",
        "none": "dualteacher.semi.losses:valid_weights",
    },
)
"""``method.threshold_mode`` -> per-pixel weights of the pseudo-label loss (:func:`~dualteacher.semi.losses.pseudo_label_loss`)."""

EVAL_MODES = Registry(
    "evaluation mode",
    group="dualteacher.eval_modes",
    entries={
        "whole": "dualteacher.inference.modes:WHOLE",
        "center": "dualteacher.inference.modes:CENTER",
        "slide": "dualteacher.inference.modes:SLIDE",
    },
)
"""``data.eval_mode`` -> :class:`~dualteacher.inference.modes.EvalMode`."""

TRACKERS = Registry(
    "tracker",
    group="dualteacher.trackers",
    entries={
        "tensorboard": "dualteacher.training.trackers:TensorBoardTracker",
        "csv": "dualteacher.training.trackers:CsvTracker",
        "mlflow": "dualteacher.training.trackers:MlflowTracker",
        "wandb": "dualteacher.training.trackers:WandbTracker",
    },
)
"""``train.loggers`` -> :class:`~dualteacher.training.trackers.Tracker` class (``csv`` always runs)."""

ENTRY_POINT_GROUPS = {
    registry.group: registry
    for registry in (METHODS, DATASETS, NETWORKS, MIXINGS, THRESHOLD_MODES, EVAL_MODES, TRACKERS)
}
"""Entry-point group -> the registry an installed package adds names to through it."""
