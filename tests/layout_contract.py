"""The contract every dataset layout keeps, as a test class to subclass.

``class TestMyLayout(LayoutContract): dataset = "my_layout"`` (a name in
:data:`~dualteacher.registry.DATASETS`) with ``make_tree(root)``, which writes a tiny tree in that
layout (a few images, masks that hold ignored pixels and at least one class) and returns the
dataset root, runs every check below on the :class:`~dualteacher.data.source.DataSource` that
``open_source`` opens on it, as training, evaluation, ``check-data`` and ``split`` use it:

* it names itself by its registered name and lists unique, non-empty class names (fewer than 255:
  255 is the ignore value);
* every split of the tree lists unique ids, and the val split shares none with the training pool;
* ``files(ids, labeled)`` gives one existing image (and, labelled, one mask) per id, the same
  images either way;
* labelled samples hold a uint8 image ``[3, H, W]`` and an int64 mask ``[H, W]`` of class
  indices or 255 (ignored), the stored mask through ``files(...).label_map``; unlabelled samples
  a bool ``valid`` map and no mask;
* an image's path relative to the root, as split lists written by other code bases give it,
  names its id (``entry_id``, ``listed_ids``);
* a labelled budget drawn from the training pool (``split_source``) writes lists that read back
  as disjoint splits, into the splits folder;
* a missing root, or a folder without the layout, is a :class:`~dualteacher.data.core.DataError`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualteacher.data.core import DataError
from dualteacher.data.registry import open_source
from dualteacher.data.source import DataSource
from dualteacher.data.split_files import split_source
from dualteacher.data.transforms import IGNORE_INDEX
from dualteacher.registry import DATASETS


class LayoutContract:
    """Checks that fail when a dataset reader breaks what the rest of the code relies on; see the module docstring."""

    dataset: str
    """The registered name of the layout under test."""
    pool: str = "train"
    """The split labelled budgets are drawn from."""
    val: str = "val"
    """The split models are scored on."""
    labeled_splits: tuple[str, ...] = ("train", "val")
    """Splits of the tree whose every id has a mask."""
    other_splits: tuple[str, ...] = ()
    """Further splits of the tree (ids need no mask)."""

    def make_tree(self, root: Path) -> Path:
        """Write a tiny tree in the layout under ``root``; return the dataset root to open."""
        raise NotImplementedError

    @pytest.fixture
    def source(self, tmp_path: Path) -> DataSource:
        """The reader on a fresh tree; split lists in the layout's own default place, except that a
        benchmark's (``./splits/<name>``) go to a temporary folder."""
        splits = tmp_path / "splits" if DATASETS.get(self.dataset).benchmark else None
        return open_source(self.dataset, self.make_tree(tmp_path / "tree"), splits)

    def test_it_names_itself_and_lists_its_classes(self, source: DataSource) -> None:
        assert source.name == self.dataset and type(source) is DATASETS.get(self.dataset)
        classes = source.classes
        assert classes and all(isinstance(c, str) and c for c in classes)
        assert len(set(classes)) == len(classes) < IGNORE_INDEX

    def test_splits_list_unique_ids_and_val_is_apart_from_the_pool(self, source: DataSource) -> None:
        for split in {*self.labeled_splits, *self.other_splits, self.pool, self.val}:
            ids = source.split_ids(split)
            assert ids and len(set(ids)) == len(ids) and all(isinstance(i, str) and i for i in ids), split
        assert not set(source.split_ids(self.val)) & set(source.split_ids(self.pool))

    def test_files_name_one_existing_image_and_mask_per_id(self, source: DataSource) -> None:
        for split in self.labeled_splits:
            ids = source.split_ids(split)
            labeled, unlabeled = source.files(ids, labeled=True), source.files(ids, labeled=False)
            assert labeled.masks is not None and len(labeled.images) == len(labeled.masks) == len(ids)
            assert all(path.is_file() for path in [*labeled.images, *labeled.masks]), split
            assert unlabeled.masks is None and unlabeled.images == labeled.images

    def test_masks_read_as_classes_with_255_ignored(self, source: DataSource) -> None:
        num_classes, seen = len(source.classes), set()
        for split in self.labeled_splits:
            ids = source.split_ids(split)
            files, samples = source.files(ids, labeled=True), source.dataset(ids, labeled=True)
            assert files.masks is not None and len(samples) == len(ids)
            for k in range(len(ids)):
                image, mask = samples[k]["image"], samples[k]["mask"]
                assert image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3
                assert mask.dtype == torch.int64 and mask.shape == image.shape[1:]
                values = set(mask.unique().tolist())
                assert values <= {*range(num_classes), IGNORE_INDEX}, (ids[k], values)
                stored = np.array(Image.open(files.masks[k]))
                expected = stored if files.label_map is None else files.label_map[stored]
                np.testing.assert_array_equal(mask.numpy(), expected)  # the mask the data check reads
                seen |= values
        assert IGNORE_INDEX in seen and seen - {IGNORE_INDEX}, "the tree should hold ignored and class pixels"

    def test_unlabeled_samples_read_no_mask(self, source: DataSource) -> None:
        sample = source.dataset(source.split_ids(self.pool)[:1], labeled=False)[0]
        assert "mask" not in sample and sample["valid"].dtype == torch.bool
        assert sample["valid"].shape == sample["image"].shape[1:] and sample["valid"].all()

    def test_an_image_path_relative_to_the_root_names_its_id(self, source: DataSource) -> None:
        ids = source.split_ids(self.pool)[:3]
        entries = [path.relative_to(source.root).as_posix() for path in source.files(ids, labeled=False).images]
        assert [source.entry_id(entry) for entry in entries] == ids
        assert source.listed_ids([*entries, *ids]) == [*ids, *ids]

    def test_a_labelled_budget_splits_the_pool_into_readable_lists(self, source: DataSource) -> None:
        labeled, unlabeled = split_source(source, 2, seed=0, pool=self.pool)
        assert labeled.parent == unlabeled.parent == source.splits_dir
        chosen, rest = source.split_ids(labeled.stem), source.split_ids(unlabeled.stem)
        assert len(chosen) == 2 and set(chosen) <= set(source.split_ids(self.pool))
        assert rest and not set(chosen) & set(rest) and not set(rest) & set(source.split_ids(self.val))

    def test_a_missing_root_or_layout_is_a_data_error(self, tmp_path: Path) -> None:
        with pytest.raises(DataError, match="not a directory"):
            open_source(self.dataset, tmp_path / "nowhere", tmp_path / "splits")
        (tmp_path / "empty").mkdir()
        with pytest.raises(DataError):  # when opened, or at the latest when its classes or val split are read
            source = open_source(self.dataset, tmp_path / "empty", tmp_path / "splits")
            source.classes, source.split_ids(self.val)
