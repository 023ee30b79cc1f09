"""Opening a dataset reader by name (``--dataset`` / ``data.dataset``, the names of
:data:`~dualteacher.registry.DATASETS`) and where its split lists live.

Split lists (``labeled_*.txt``, ``unlabeled_*.txt``) are stored in ``data.splits_dir``; left
empty it is ``ROOT/splits`` for the folder layout and ``splits/<dataset>`` under the current
directory for the standard benchmarks, whose roots are often read-only or shared.
"""

from __future__ import annotations

from pathlib import Path

from dualteacher.data.core import DataError
from dualteacher.data.source import DataSource
from dualteacher.data.transforms import IGNORE_INDEX
from dualteacher.registry import DATASETS


def reader(dataset: str) -> type[DataSource]:
    """The :class:`DataSource` class registered as ``dataset``; :class:`DataError` for an unknown name."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r} (available: {', '.join(DATASETS)})")
    return DATASETS.get(dataset)


def default_splits_dir(dataset: str, root: str | Path) -> Path:
    """``./splits/<dataset>`` for a benchmark, ``ROOT/splits`` otherwise (the folder layout)."""
    return Path("splits") / dataset if reader(dataset).benchmark else Path(root).expanduser() / "splits"


def open_source(
    dataset: str, root: str | Path, splits_dir: str | Path | None = None, *, ignore_index: int = IGNORE_INDEX
) -> DataSource:
    """The reader of ``dataset`` on ``root``, its layout checked; ``splits_dir`` empty = the default.

    ``ignore_index`` is the stored mask value of unlabelled pixels (``data.ignore_index``): the
    folder layout reads it; the standard benchmarks have their own (their label maps), so any
    value but 255 is a :class:`DataError` for them, as are unknown datasets and an empty root.
    """
    source = reader(dataset)
    if not str(root):
        raise DataError("no dataset root given: set data.root (or --data) to the dataset folder")
    folder = Path(splits_dir) if splits_dir else default_splits_dir(dataset, root)
    if not source.benchmark:
        return source(root, folder, ignore_index)  # type: ignore[call-arg]
    if ignore_index != IGNORE_INDEX:
        raise DataError(
            f"data.ignore_index={ignore_index}: only the folder layout reads it; {dataset} masks mark "
            f"unlabelled pixels by the dataset's own convention (see README), so leave it at {IGNORE_INDEX}"
        )
    return source(root, folder)
