"""Dataset readers by name (``--dataset`` / ``data.dataset``) and where their split lists live.

Split lists (``labeled_*.txt``, ``unlabeled_*.txt``) are stored in ``data.splits_dir``; left
empty it is ``ROOT/splits`` for the folder layout and ``splits/<dataset>`` under the current
directory for the standard benchmarks, whose roots are often read-only or shared.
"""

from __future__ import annotations

from pathlib import Path

from dualteacher.data.folder import DataError
from dualteacher.data.source import DataSource, FolderSource
from dualteacher.data.standard import ADE20K, VOC, Cityscapes, VOCAug
from dualteacher.data.transforms import IGNORE_INDEX

DATASETS: dict[str, type[DataSource]] = {
    "folder": FolderSource,
    "voc": VOC,
    "voc_aug": VOCAug,
    "cityscapes": Cityscapes,
    "ade20k": ADE20K,
}


def default_splits_dir(dataset: str, root: str | Path) -> Path:
    """``ROOT/splits`` for the folder layout, ``./splits/<dataset>`` for the benchmarks."""
    return Path(root).expanduser() / "splits" if dataset == "folder" else Path("splits") / dataset


def open_source(
    dataset: str, root: str | Path, splits_dir: str | Path | None = None, *, ignore_index: int = IGNORE_INDEX
) -> DataSource:
    """The reader of ``dataset`` on ``root``, its layout checked; ``splits_dir`` empty = the default.

    ``ignore_index`` is the stored mask value of unlabelled pixels (``data.ignore_index``): the
    folder layout reads it; the standard benchmarks have their own (their label maps), so any
    value but 255 is a :class:`DataError` for them, as are unknown datasets and an empty root.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r} (available: {', '.join(DATASETS)})")
    if not str(root):
        raise DataError("no dataset root given: set data.root (or --data) to the dataset folder")
    folder = Path(splits_dir) if splits_dir else default_splits_dir(dataset, root)
    if dataset == "folder":
        return FolderSource(root, folder, ignore_index)
    if ignore_index != IGNORE_INDEX:
        raise DataError(
            f"data.ignore_index={ignore_index}: only the folder layout reads it; {dataset} masks mark "
            f"unlabelled pixels by the dataset's own convention (see README), so leave it at {IGNORE_INDEX}"
        )
    return DATASETS[dataset](root, folder)
