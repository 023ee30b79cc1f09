"""Every dataset layout keeps the layout contract (:mod:`layout_contract`): one class here per
name in :data:`~dualteacher.registry.DATASETS`, each on a tiny tree (:mod:`dataset_trees`,
:mod:`scenes`)."""

from pathlib import Path

import numpy as np
from PIL import Image

from dualteacher.registry import DATASETS

from dataset_trees import make_ade, make_cityscapes, make_voc
from layout_contract import LayoutContract
from scenes import make_scenes


class TestFolder(LayoutContract):
    dataset = "folder"
    other_splits = ("labeled", "unlabeled")

    def make_tree(self, root: Path) -> Path:
        """The issue-14 scenes with a train list of their 12 train ids and an ignored band in one val mask."""
        make_scenes(root)
        (root / "splits" / "train.txt").write_text("".join(f"train{i:03d}\n" for i in range(12)))
        path = root / "masks" / "val001.png"
        values = np.array(Image.open(path))
        values[:, :8] = 255
        Image.fromarray(values).save(path)
        return root


class TestVOC(LayoutContract):
    dataset = "voc"
    other_splits = ("train_aug",)  # SBD-only ids have no fine mask

    def make_tree(self, root: Path) -> Path:
        return make_voc(root)


class TestVOCAug(LayoutContract):
    dataset = "voc_aug"

    def make_tree(self, root: Path) -> Path:
        return make_voc(root)


class TestCityscapes(LayoutContract):
    dataset = "cityscapes"

    def make_tree(self, root: Path) -> Path:
        return make_cityscapes(root)


class TestADE20K(LayoutContract):
    dataset = "ade20k"

    def make_tree(self, root: Path) -> Path:
        return make_ade(root)


def test_every_registered_layout_has_a_contract_test() -> None:
    covered = {cls.dataset for cls in LayoutContract.__subclasses__()}
    missing = [name for name in DATASETS if name not in covered]
    assert not missing, f"add a LayoutContract subclass in {__file__} for {missing}"
