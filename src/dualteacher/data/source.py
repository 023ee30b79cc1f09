"""A dataset on disk as the rest of the code sees it: class names, named splits, files per id.

Every reader (the generic folder layout in :mod:`dualteacher.data.folder`, the standard
benchmarks in :mod:`dualteacher.data.standard`) is a :class:`DataSource`. A split is a list of
sample ids; the reader's *built-in* splits (e.g. ``train``/``val`` of PASCAL VOC) come from the
official layout, every other split name is a file ``<splits_dir>/<name>.txt`` with one id per
line (the lists written by ``dualteacher split``). The samples of a list of ids become a
:class:`~dualteacher.data.core.FileListDataset`, so all readers share one loading,
augmentation and collation path.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from dualteacher.data.core import (
    DataError,
    FileListDataset,
    extension_hint,
    find_missing,
    missing_files_error,
    read_id_list,
    strip_image_suffix,
)
from dualteacher.data.mask_values import MaskValues
from dualteacher.data.transforms import Transform
from dualteacher.registry import DATASETS


@dataclass(frozen=True, eq=False)
class SampleFiles:
    """The files of a list of ids, one entry per id, not checked for existence.

    ``masks`` is None for unlabelled lists; ``label_map`` (uint8 [256], or None) translates
    stored mask values to classes.
    """

    images: list[Path]
    masks: list[Path] | None
    label_map: np.ndarray | None = None


class DataSource(ABC):
    """Base class of the dataset readers; subclasses implement the hooks below and are registered
    by name in :data:`~dualteacher.registry.DATASETS`.

    A reader of a public benchmark sets :attr:`benchmark`; any other reader is constructed as
    ``Reader(root, splits_dir, ignore_index)`` (see :class:`~dualteacher.data.folder.FolderSource`).
    """

    builtin_splits: tuple[str, ...] = ()
    label_map: np.ndarray | None = None
    mask_values: MaskValues | None = None
    """The dataset's own stored value -> class map (the folder layout's ``ROOT/mask_values.json``),
    folded into :attr:`label_map`; None when it has none."""
    benchmark: bool = False
    """A public benchmark: its root is often read-only or shared, so split lists default to
    ``./splits/<name>``, and its masks mark unlabelled pixels its own way (``data.ignore_index`` stays 255)."""

    def __init__(self, root: str | Path, splits_dir: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.splits_dir = Path(splits_dir).expanduser()
        if not self.root.is_dir():
            raise DataError(f"data root {self.root} is not a directory ({self.layout_hint()})")
        self.check_layout()

    # ---------------------------------------------------------------- hooks
    def layout_hint(self) -> str:
        """One line telling the user which folder ROOT should be."""
        return ""

    def check_layout(self) -> None:
        """Raise :class:`DataError` naming every missing folder/file of the official layout."""

    @property
    @abstractmethod
    def classes(self) -> list[str]:
        """Class names; index i names class i."""

    def builtin_ids(self, split: str) -> list[str]:
        """Ids of a built-in split (one of :attr:`builtin_splits`)."""
        raise DataError(f"{self.name}: no built-in split {split!r}")

    @abstractmethod
    def files(self, ids: list[str], *, labeled: bool) -> SampleFiles:
        """Where the image (and, when ``labeled``, the mask) of each id is; nothing is checked."""

    def missing_files(self, ids: list[str], files: SampleFiles, *, labeled: bool) -> list[str]:
        """The files of ``files`` (those of ``ids``) that do not exist, each with a hint when an
        id looks like a file name; a layout with its own file rules overrides it."""
        missing = find_missing(files.images + (files.masks if labeled and files.masks is not None else []))
        if not missing:
            return []
        id_of = {str(image): sample_id for sample_id, image in zip(ids, files.images, strict=True)}
        return [path + extension_hint(id_of.get(path, "")) for path in missing]

    @abstractmethod
    def entry_id(self, entry: str) -> str:
        """The sample id named by one entry of an imported split file.

        ``entry`` is the first field of a line: an id, a file name (``2007_000033.jpg``) or an
        image path relative to the dataset root (the UniMatch/U2PL format).
        """

    # ---------------------------------------------------------------- shared
    def dataset(
        self,
        ids: list[str],
        *,
        labeled: bool,
        transform: Transform | Callable | None = None,
        check_classes: bool = True,
    ) -> FileListDataset:
        """The samples of ``ids`` (masks with ``labeled``, their values checked against the classes
        with ``check_classes``); every file they need is checked up front: :class:`DataError`
        naming the missing ones."""
        files = self.files(ids, labeled=labeled)
        missing = self.missing_files(ids, files, labeled=labeled)
        if missing:
            raise missing_files_error(self.root, missing, labeled)
        return FileListDataset(
            ids,
            files.images,
            files.masks,
            labeled=labeled,
            transform=transform,
            num_classes=len(self.classes) if labeled and check_classes else None,
            label_map=files.label_map,
        )

    @property
    def name(self) -> str:
        """The reader's name in :data:`~dualteacher.registry.DATASETS` (its class name if unregistered)."""
        return DATASETS.name_of(type(self)) or type(self).__name__

    def split_ids(self, split: str) -> list[str]:
        """Ids of ``split``: built in, or read from ``<splits_dir>/<split>.txt`` (see :meth:`listed_ids`)."""
        if split in self.builtin_splits:
            return self.builtin_ids(split)
        return self.listed_ids(read_id_list(self.split_file(split)))

    def listed_ids(self, entries: list[str]) -> list[str]:
        """The ids of the entries of a split list: an entry written as its image's file name or
        path (``img000.png``, ``JPEGImages/2007_000033.jpg``) becomes that image's id when the
        image it names exists; every other entry is an id as written."""
        named = [k for k, entry in enumerate(entries) if strip_image_suffix(entry) != entry]
        if not named:
            return entries
        candidates = [self.entry_id(entries[k]) for k in named]
        images = self.files(candidates, labeled=False).images
        missing = set(find_missing(images))
        ids = list(entries)
        for k, candidate, image in zip(named, candidates, images, strict=True):
            if str(image) not in missing and _names(image, entries[k]):
                ids[k] = candidate
        return ids

    def split_file(self, split: str) -> Path:
        """Where a split list named ``split`` is stored."""
        filename = split if split.endswith(".txt") else f"{split}.txt"
        return self.splits_dir / filename

    def default_unlabeled_pool(self, labeled_pool: str) -> str:
        """The split whose remaining ids become the unlabelled set when labelling ``labeled_pool``."""
        return labeled_pool


def _names(path: Path, entry: str) -> bool:
    """Whether ``entry`` (a file name or a relative path, / or \\ separated) names ``path``."""
    parts = tuple(p for p in PurePosixPath(entry.replace("\\", "/")).parts if p not in (".", "/"))
    return bool(parts) and path.parts[-len(parts) :] == parts
