"""The generic folder layout: the reader of the built-in demo data and of users' own data.

Layout::

    ROOT/images/<id>.jpg|.jpeg|.png   the photo; any PIL mode is converted to RGB
    ROOT/masks/<id>.png               class index per pixel (PIL mode "L" or "P"), 255 = ignore
                                      (and ``ignore_index``, see :func:`~dualteacher.data.core.ignore_map`)
    ROOT/classes.txt                  one class name per line (line i = class i)
    ROOT/mask_values.json             optional: stored mask value -> class, e.g. {"0": 0, "255": 1}
                                      for binary masks saved as 0/255 (:mod:`dualteacher.data.mask_values`)
    ROOT/splits/<name>.txt            one <id> per line (train, val, labeled, unlabeled, ...)

Images and masks are decoded by :mod:`dualteacher.data.core` (conversions listed there).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from dualteacher.data.core import (
    IMAGE_EXTENSIONS,
    DataError,
    DirectoryIndex,
    extension_hint,
    read_list_text,
    strip_image_suffix,
)
from dualteacher.data.mask_values import mask_label_map, read_mask_values
from dualteacher.data.source import DataSource, SampleFiles
from dualteacher.data.transforms import IGNORE_INDEX


def read_classes(root: Path) -> list[str]:
    """Class names from ``ROOT/classes.txt`` (line i names class i; trailing blank lines ignored)."""
    path = Path(root) / "classes.txt"
    if not path.is_file():
        raise DataError(f"class list not found: {path}")
    names = read_list_text(path)
    while names and not names[-1]:
        names.pop()
    if not names:
        raise DataError(f"class list is empty: {path}")
    if "" in names:
        raise DataError(f"blank class name on line {names.index('') + 1} of {path}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"class names listed twice in {path}: {', '.join(duplicates)}")
    return names


def folder_files(root: Path, ids: Sequence[str], *, labeled: bool) -> tuple[list[Path], list[Path], list[str]]:
    """Image and mask paths of ``ids`` in the folder layout, and the files that are missing.

    An image is the first of ``images/<id>.jpg|.jpeg|.png`` that exists (``.jpg`` when none
    does); masks are ``masks/<id>.png``, listed only when ``labeled``. Paths are joined as
    strings: Path objects per candidate were half the time of a cached data check.
    """
    index = DirectoryIndex()
    missing: list[str] = []
    image_paths: list[Path] = []
    mask_paths: list[Path] = []
    images, masks = os.path.join(root, "images"), os.path.join(root, "masks")
    for sample_id in ids:
        stem = os.path.join(images, sample_id)
        found = next((stem + ext for ext in IMAGE_EXTENSIONS if index.exists(stem + ext)), None)
        image_paths.append(Path(found or stem + IMAGE_EXTENSIONS[0]))
        if found is None:
            missing.append(f"{stem}.jpg (or .jpeg/.png){extension_hint(sample_id)}")
        if labeled:
            mask_path = os.path.join(masks, f"{sample_id}.png")
            mask_paths.append(Path(mask_path))
            if not index.exists(mask_path):
                missing.append(mask_path)
    return image_paths, mask_paths, missing


class FolderSource(DataSource):
    """The generic folder layout (see the module docstring); every split is a file.

    Masks are read through one label map (:func:`~dualteacher.data.mask_values.mask_label_map`),
    so the loader, ``check-data`` and evaluation see the same values: ``ROOT/mask_values.json``
    when the dataset has one (:attr:`mask_values`: stored value -> class, e.g. 255 -> 1 for
    binary masks saved as 0/255), and ``ignore_index`` (``data.ignore_index``, default 255), the
    stored value of unlabelled pixels, mapped to :data:`IGNORE_INDEX`. 255 is ignored too, unless
    the dataset's map makes it a class. Raises :class:`DataError` for an unreadable map, or an
    ``ignore_index`` that the map lists.
    """

    def __init__(self, root: str | Path, splits_dir: str | Path, ignore_index: int = IGNORE_INDEX) -> None:
        self.mask_values = read_mask_values(root)
        self.label_map = mask_label_map(self.mask_values, ignore_index)
        super().__init__(root, splits_dir)

    def layout_hint(self) -> str:
        return "expected ROOT/images, ROOT/masks, ROOT/classes.txt and ROOT/splits"

    @property
    def classes(self) -> list[str]:
        return read_classes(self.root)

    def files(self, ids: list[str], *, labeled: bool) -> SampleFiles:
        images, masks, _ = folder_files(self.root, ids, labeled=labeled)
        return SampleFiles(images, masks if labeled else None, self.label_map)

    def missing_files(self, ids: list[str], files: SampleFiles, *, labeled: bool) -> list[str]:
        """Missing images are named with every extension tried (``.jpg``, ``.jpeg``, ``.png``)."""
        return folder_files(self.root, ids, labeled=labeled)[2]

    def entry_id(self, entry: str) -> str:
        parts = PurePosixPath(entry.replace("\\", "/")).parts
        if parts and parts[0] == "images":
            return strip_image_suffix("/".join(parts[1:]))
        return strip_image_suffix(entry)
