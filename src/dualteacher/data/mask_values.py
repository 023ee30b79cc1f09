"""A folder dataset's mask value map, ``ROOT/mask_values.json``: which class each stored mask value means.

Masks are read as stored: value ``v`` is class ``v``, and 255 is ignore (:data:`IGNORE_INDEX`).
Annotation tools write binary masks as 0/255, the foreground as 255; such a dataset records the
map ``{"0": 0, "255": 1}``, and every command that opens the folder (``check-data``, ``train``,
``eval``, ``load_model(...).eval_dataset()``, ``compare``) reads 255 as class 1 through it,
without a flag and without changing a mask file. ``dualteacher init`` writes it when it
recognises binary masks (:func:`binary_255`); the user may write their own::

    {
      "0": 0,
      "255": 1
    }

Keys are stored values (0..255, as strings: JSON keys are strings), values the class index each
means (0..255; 255 = ignore). A value the file does not list is read as stored. In a dataset
whose map sends 255 to a class, 255 is that class and nothing is ignored unless
``data.ignore_index`` names another stored value (which the map must not list).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualteacher.data.core import DataError, ignore_map
from dualteacher.data.transforms import IGNORE_INDEX

MASK_VALUES_FILE = "mask_values.json"
BINARY_255 = {0: 0, IGNORE_INDEX: 1}
"""The map of binary masks saved as 0/255: 0 is class 0 (background), 255 class 1 (foreground)."""


@dataclass(frozen=True)
class MaskValues:
    """The map of one dataset: the file it was read from and stored value -> class index."""

    path: Path
    mapping: dict[int, int]

    def table(self) -> np.ndarray:
        """The map as a lookup table (uint8 [256]); unlisted values map to themselves."""
        table = np.arange(256, dtype=np.uint8)
        for stored, value in self.mapping.items():
            table[stored] = value
        return table

    def describe(self, classes: Sequence[str] | None = None) -> str:
        """``"0 -> 0 (background), 255 -> 1 (foreground)"``; class names when ``classes`` holds them."""
        return describe(self.mapping, classes)


def describe(mapping: Mapping[int, int], classes: Sequence[str] | None = None) -> str:
    """Stored value -> class, in words: ``"0 -> 0 (background), 255 -> 1 (foreground)"``
    (``255 -> ignore`` for the ignore value; names only where ``classes`` has them)."""
    words = []
    for stored, value in sorted(mapping.items()):
        if value == IGNORE_INDEX:
            words.append(f"{stored} -> ignore")
        else:
            name = f" ({classes[value]})" if classes is not None and value < len(classes) else ""
            words.append(f"{stored} -> {value}{name}")
    return ", ".join(words)


def read_mask_values(root: str | Path, fix: str | None = None) -> MaskValues | None:
    """The map of the folder dataset at ``root`` (None when it has no ``mask_values.json``).

    Raises :class:`DataError` naming the file when it is not a JSON object of stored values
    (``"0"`` .. ``"255"``) to class indices (0..255), ending with ``fix`` (default: delete the
    file and let ``dualteacher init`` write it again).
    """
    path = Path(root).expanduser() / MASK_VALUES_FILE
    if not path.is_file():
        return None
    fix = fix or f"fix it, or delete it and run: dualteacher init --data {Path(root)}"
    example = '{"0": 0, "255": 1}'
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path} is not readable JSON ({error}): it maps stored mask values to classes, e.g. {example}; {fix}"
        ) from error
    if not isinstance(data, dict):
        raise DataError(
            f"{path} holds a JSON {type(data).__name__}, not an object of stored mask value -> class "
            f"index, e.g. {example}; {fix}"
        )
    mapping: dict[int, int] = {}
    for key, value in data.items():
        stored = int(key) if key.isascii() and key.isdigit() else -1
        if not 0 <= stored <= 255:
            raise DataError(
                f"{path}: key {key!r} is not a stored mask value 0..255 (keys are values as strings, "
                f"e.g. {example}); {fix}"
            )
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
            raise DataError(f"{path}: {key!r} maps to {value!r}, not a class index 0..255 (255 = ignore); {fix}")
        mapping[stored] = value
    return MaskValues(path, mapping)


def write_mask_values(root: Path, mapping: Mapping[int, int]) -> Path:
    """Write ``mapping`` to ``root/mask_values.json`` (sorted by stored value, atomically); returns the path."""
    path = root / MASK_VALUES_FILE
    text = json.dumps({str(k): int(v) for k, v in sorted(mapping.items())}, indent=2) + "\n"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def same_map(first: Mapping[int, int], second: Mapping[int, int]) -> bool:
    """Whether two maps read every stored value as the same class (unlisted values map to themselves)."""
    return all(first.get(v, v) == second.get(v, v) for v in range(256))


def mask_label_map(mask_values: MaskValues | None, ignore_index: int = IGNORE_INDEX) -> np.ndarray | None:
    """The label map (uint8 [256]) with which a folder dataset's masks are read: ``mask_values``,
    then the stored value ``ignore_index`` (``data.ignore_index``) to :data:`IGNORE_INDEX`
    (:func:`~dualteacher.data.core.ignore_map`). None when every value is read as stored.

    Raises :class:`DataError` when ``ignore_index`` (other than 255) is a value the map lists, and
    ValueError for an ``ignore_index`` outside 0..255.
    """
    ignored = ignore_map(ignore_index)
    if mask_values is None:
        return ignored
    if ignored is not None and ignore_index in mask_values.mapping:
        value = mask_values.mapping[ignore_index]
        raise DataError(
            f"data.ignore_index={ignore_index} names a stored value that {mask_values.path} maps to "
            f"{'ignore' if value == IGNORE_INDEX else f'class {value}'}: a stored value is either a class "
            f"or ignored; remove {str(ignore_index)!r} from the file, or set data.ignore_index to "
            f"another value"
        )
    table = mask_values.table()
    if ignored is not None:
        table[ignore_index] = IGNORE_INDEX
    return None if np.array_equal(table, np.arange(256)) else table


@dataclass(frozen=True)
class Binary255:
    """Masks recognised as binary masks that store the foreground as 255: how many do
    (``as_255``), and how many store it as 1 (``as_1``, masks from another tool)."""

    as_255: int
    as_1: int


def binary_255(value_sets: Iterable[Collection[int]]) -> Binary255 | None:
    """Whether the masks whose stored values are ``value_sets`` (one collection per mask) are
    binary masks with the foreground saved as 255: every mask holds only 0, 1 and 255, some hold
    255, and none holds both 1 and 255 (there 255 marks unlabelled pixels next to class 1).
    The caller also requires at most 2 classes. None when they are not."""
    as_255 = as_1 = 0
    for values in value_sets:
        found = set(values)
        if not found <= {0, 1, IGNORE_INDEX} or {1, IGNORE_INDEX} <= found:
            return None
        as_255 += IGNORE_INDEX in found
        as_1 += 1 in found
    return Binary255(as_255, as_1) if as_255 else None
