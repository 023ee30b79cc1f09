"""Data: the generic folder layout, the built-in digit-scenes demo, splits and CPU transforms."""

from dualteacher.data.digits import ensure_digit_scenes, generate_digit_scenes
from dualteacher.data.folder import (
    DataError,
    FolderDataset,
    collate_eval,
    find_image,
    read_classes,
    read_split,
)
from dualteacher.data.splits import make_split, parse_labeled, write_split
from dualteacher.data.transforms import EvalTransform, WeakTransform

__all__ = [
    "DataError",
    "EvalTransform",
    "FolderDataset",
    "WeakTransform",
    "collate_eval",
    "ensure_digit_scenes",
    "find_image",
    "generate_digit_scenes",
    "make_split",
    "parse_labeled",
    "read_classes",
    "read_split",
    "write_split",
]
