"""Data: the shared core, the generic folder layout, PASCAL VOC / Cityscapes / ADE20K, the
built-in digit-scenes demo, splits and CPU transforms."""

from dualteacher.data.core import DataError, FileListDataset, collate_eval
from dualteacher.data.digits import ensure_digit_scenes, generate_digit_scenes
from dualteacher.data.folder import FolderSource, read_classes
from dualteacher.data.registry import open_source
from dualteacher.data.source import DataSource
from dualteacher.data.split_files import import_split, split_source
from dualteacher.data.splits import make_split, parse_labeled
from dualteacher.data.transforms import EvalTransform, WeakTransform

__all__ = [
    "DataError",
    "DataSource",
    "EvalTransform",
    "FileListDataset",
    "FolderSource",
    "WeakTransform",
    "collate_eval",
    "ensure_digit_scenes",
    "generate_digit_scenes",
    "import_split",
    "make_split",
    "open_source",
    "parse_labeled",
    "read_classes",
    "split_source",
]
