"""Readers for the standard benchmarks, on their official layouts: PASCAL VOC 2012 (with the
SBD-augmented masks), Cityscapes and ADE20K.

==============  ==============================  ==========================================
dataset         ROOT                            built-in splits (ids)
==============  ==============================  ==========================================
``voc``         ``VOCdevkit/VOC2012``           ``train`` 1,464 and ``val`` 1,449 (ImageSets/
                                                Segmentation), ``train_aug`` 10,582 (below)
``voc_aug``     ``VOCdevkit/VOC2012``           ``train`` 10,582 (= ``train_aug``), ``val``
``cityscapes``  the folder holding leftImg8bit  ``train`` 2,975 and ``val`` 500
``ade20k``      ``ADEChallengeData2016``        ``train`` 20,210 and ``val`` 2,000
==============  ==============================  ==========================================

Masks and labels:

* VOC: ``SegmentationClass/<id>.png`` are palette PNGs whose palette index is the class
  (0 background ... 20 tvmonitor, 255 object boundaries = ignore). ``voc_aug`` reads the
  SBD-augmented class-index PNGs ``SegmentationClassAug/<id>.png`` for training ids and the
  official ``SegmentationClass`` masks for the val ids. The 10,582 ``train_aug`` ids are
  ``ImageSets/Segmentation/train_aug.txt`` when that file exists, else every id with a
  ``SegmentationClassAug`` mask; val ids are removed in both cases. In the classic ``voc``
  setting labelled ids come from the 1,464 ``train`` ids and, when ``train_aug`` is available,
  the unlabelled ids are the rest of ``train_aug`` (as in the UniMatch/U2PL protocol).
* Cityscapes: ids are ``<split>/<city>/<city>_<seq>_<frame>``; images
  ``leftImg8bit/<id>_leftImg8bit.png``. Masks: ``gtFine/<id>_gtFine_labelTrainIds.png``
  (already train ids) when every image of the requested list has one, else
  ``gtFine/<id>_gtFine_labelIds.png`` mapped to the 19 train ids (every other id -> 255).
* ADE20K: ids are file stems (``ADE_train_00000001``); ``ADE_val_*`` images live in
  ``images/validation``, all others in ``images/training``; masks ``annotations/.../<id>.png``
  where 0 ("other") -> 255 and 1..150 -> 0..149 (mmseg's ``reduce_zero_label``).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import numpy as np

from dualteacher.data.core import (
    DataError,
    find_missing,
    read_id_list,
    strip_image_suffix,
)
from dualteacher.data.source import DataSource, SampleFiles
from dualteacher.data.transforms import IGNORE_INDEX

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
# Cityscapes label id of each train id 0..18 (cityscapesScripts' labels.py).
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
ADE20K_CLASSES = (
    "wall",
    "building",
    "sky",
    "floor",
    "tree",
    "ceiling",
    "road",
    "bed",
    "windowpane",
    "grass",
    "cabinet",
    "sidewalk",
    "person",
    "earth",
    "door",
    "table",
    "mountain",
    "plant",
    "curtain",
    "chair",
    "car",
    "water",
    "painting",
    "sofa",
    "shelf",
    "house",
    "sea",
    "mirror",
    "rug",
    "field",
    "armchair",
    "seat",
    "fence",
    "desk",
    "rock",
    "wardrobe",
    "lamp",
    "bathtub",
    "railing",
    "cushion",
    "base",
    "box",
    "column",
    "signboard",
    "chest of drawers",
    "counter",
    "sand",
    "sink",
    "skyscraper",
    "fireplace",
    "refrigerator",
    "grandstand",
    "path",
    "stairs",
    "runway",
    "case",
    "pool table",
    "pillow",
    "screen door",
    "stairway",
    "river",
    "bridge",
    "bookcase",
    "blind",
    "coffee table",
    "toilet",
    "flower",
    "book",
    "hill",
    "bench",
    "countertop",
    "stove",
    "palm",
    "kitchen island",
    "computer",
    "swivel chair",
    "boat",
    "bar",
    "arcade machine",
    "hovel",
    "bus",
    "towel",
    "light",
    "truck",
    "tower",
    "chandelier",
    "awning",
    "streetlight",
    "booth",
    "television receiver",
    "airplane",
    "dirt track",
    "apparel",
    "pole",
    "land",
    "bannister",
    "escalator",
    "ottoman",
    "bottle",
    "buffet",
    "poster",
    "stage",
    "van",
    "ship",
    "fountain",
    "conveyer belt",
    "canopy",
    "washer",
    "plaything",
    "swimming pool",
    "stool",
    "barrel",
    "basket",
    "waterfall",
    "tent",
    "bag",
    "minibike",
    "cradle",
    "oven",
    "ball",
    "food",
    "step",
    "tank",
    "trade name",
    "microwave",
    "pot",
    "animal",
    "bicycle",
    "lake",
    "dishwasher",
    "screen",
    "blanket",
    "sculpture",
    "hood",
    "sconce",
    "vase",
    "traffic light",
    "tray",
    "ashcan",
    "fan",
    "pier",
    "crt screen",
    "plate",
    "monitor",
    "bulletin board",
    "shower",
    "radiator",
    "glass",
    "clock",
    "flag",
)


def cityscapes_label_map() -> np.ndarray:
    """256-entry table: Cityscapes label id -> train id, 255 for every id outside the 19 classes."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for train_id, label_id in enumerate(CITYSCAPES_LABEL_IDS):
        table[label_id] = train_id
    return table


def ade20k_label_map() -> np.ndarray:
    """256-entry table: 0 ("other") -> 255, k -> k - 1 for 1..254, 255 -> 255."""
    table = np.arange(-1, 255, dtype=np.int64)
    table[0] = IGNORE_INDEX
    table[255] = IGNORE_INDEX
    return table.astype(np.uint8)


def _missing_parts(root: Path, parts: tuple[str, ...]) -> list[str]:
    return [str(root / part) for part in parts if not (root / part).exists()]


def _layout_error(name: str, root: Path, missing: list[str], hint: str) -> DataError:
    listed = "\n  ".join(missing)
    return DataError(f"{name}: {root} does not have the official layout ({hint}); missing:\n  {listed}")


def _file_stem(entry: str) -> str:
    return strip_image_suffix(PurePosixPath(entry.replace("\\", "/")).name)


class _CheckedSource(DataSource):
    """Shared parts: a fixed class list, an up-front layout check and the dataset of a list
    (its files checked up front); subclasses say where the files are (:meth:`files`)."""

    class_names: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    benchmark = True

    @property
    def classes(self) -> list[str]:
        return list(self.class_names)

    def check_layout(self) -> None:
        missing = _missing_parts(self.root, self.required)
        if missing:
            raise _layout_error(self.name, self.root, missing, self.layout_hint())


class VOC(_CheckedSource):
    """PASCAL VOC 2012, the classic setting: fine masks of ``SegmentationClass``."""

    class_names = VOC_CLASSES
    builtin_splits = ("train", "val", "train_aug")
    required: tuple[str, ...] = (
        "JPEGImages",
        "SegmentationClass",
        "ImageSets/Segmentation/train.txt",
        "ImageSets/Segmentation/val.txt",
    )

    def layout_hint(self) -> str:
        return "ROOT is VOCdevkit/VOC2012"

    def builtin_ids(self, split: str) -> list[str]:
        if split == "train_aug":
            return self._train_aug_ids()
        return read_id_list(self.root / "ImageSets" / "Segmentation" / f"{split}.txt")

    def has_train_aug(self) -> bool:
        """Whether the 10,582-image SBD-augmented pool is available."""
        return (self.root / "ImageSets/Segmentation/train_aug.txt").is_file() or (
            self.root / "SegmentationClassAug"
        ).is_dir()

    def _train_aug_ids(self) -> list[str]:
        listed = self.root / "ImageSets/Segmentation/train_aug.txt"
        if listed.is_file():
            ids = read_id_list(listed)
        elif (self.root / "SegmentationClassAug").is_dir():
            ids = sorted(n[:-4] for n in os.listdir(self.root / "SegmentationClassAug") if n.endswith(".png"))
        else:
            raise DataError(
                f"{self.name}: the train_aug pool needs {listed} or {self.root / 'SegmentationClassAug'} "
                "(the SBD-augmented masks)"
            )
        val = set(self.builtin_ids("val"))
        return [i for i in ids if i not in val]

    def default_unlabeled_pool(self, labeled_pool: str) -> str:
        return "train_aug" if labeled_pool == "train" and self.has_train_aug() else labeled_pool

    def mask_paths(self, ids: list[str]) -> list[Path]:
        """The mask file of each id."""
        return [self.root / "SegmentationClass" / f"{i}.png" for i in ids]

    def files(self, ids: list[str], *, labeled: bool) -> SampleFiles:
        images = [self.root / "JPEGImages" / f"{i}.jpg" for i in ids]
        return SampleFiles(images, self.mask_paths(ids) if labeled else None)

    def entry_id(self, entry: str) -> str:
        return _file_stem(entry)


class VOCAug(VOC):
    """PASCAL VOC 2012, the blended setting: the 10,582 SBD-augmented training masks."""

    builtin_splits = ("train", "val", "train_aug")
    required = (*VOC.required, "SegmentationClassAug")

    def builtin_ids(self, split: str) -> list[str]:
        return super().builtin_ids("train_aug" if split == "train" else split)

    def default_unlabeled_pool(self, labeled_pool: str) -> str:
        return labeled_pool

    def mask_paths(self, ids: list[str]) -> list[Path]:
        """SBD-augmented masks, except for the official val ids (fine masks, scored as usual)."""
        val = set(self.builtin_ids("val"))
        return [self.root / ("SegmentationClass" if i in val else "SegmentationClassAug") / f"{i}.png" for i in ids]


class Cityscapes(_CheckedSource):
    """Cityscapes, fine annotations, 19 train ids."""

    class_names = CITYSCAPES_CLASSES
    builtin_splits = ("train", "val")
    required = ("leftImg8bit/train", "leftImg8bit/val", "gtFine/train", "gtFine/val")
    label_map = cityscapes_label_map()

    def layout_hint(self) -> str:
        return "ROOT holds leftImg8bit/ and gtFine/"

    def builtin_ids(self, split: str) -> list[str]:
        folder = self.root / "leftImg8bit" / split
        suffix = "_leftImg8bit.png"
        ids = sorted(
            f"{split}/{city.name}/{name[: -len(suffix)]}"
            for city in folder.iterdir()
            if city.is_dir()
            for name in os.listdir(city)
            if name.endswith(suffix)
        )
        if not ids:
            raise DataError(f"{self.name}: no *{suffix} images under {folder}/<city>/")
        return ids

    def files(self, ids: list[str], *, labeled: bool) -> SampleFiles:
        images = [self.root / "leftImg8bit" / f"{i}_leftImg8bit.png" for i in ids]
        if not labeled:
            return SampleFiles(images, None)
        masks = [self.root / "gtFine" / f"{i}_gtFine_labelTrainIds.png" for i in ids]
        if not find_missing(masks):
            return SampleFiles(images, masks)
        masks = [self.root / "gtFine" / f"{i}_gtFine_labelIds.png" for i in ids]
        return SampleFiles(images, masks, self.label_map)

    def entry_id(self, entry: str) -> str:
        path = entry.replace("\\", "/")
        path = path.removeprefix("leftImg8bit/")
        for suffix in ("_leftImg8bit.png", ".png"):
            path = path.removesuffix(suffix)
        parts = path.split("/")
        if len(parts) == 1:
            parts = [parts[0].split("_")[0], parts[0]]
        if len(parts) == 2:
            parts = ["train", *parts]
        return "/".join(parts[-3:])


class ADE20K(_CheckedSource):
    """ADE20K (SceneParsing ADEChallengeData2016), 150 classes."""

    class_names = ADE20K_CLASSES
    builtin_splits = ("train", "val")
    required = ("images/training", "images/validation", "annotations/training", "annotations/validation")
    label_map = ade20k_label_map()

    def layout_hint(self) -> str:
        return "ROOT is ADEChallengeData2016"

    def builtin_ids(self, split: str) -> list[str]:
        folder = self.root / "images" / ("training" if split == "train" else "validation")
        ids = sorted(n[:-4] for n in os.listdir(folder) if n.endswith(".jpg"))
        if not ids:
            raise DataError(f"{self.name}: no .jpg images in {folder}")
        return ids

    @staticmethod
    def _folder(sample_id: str) -> str:
        return "validation" if sample_id.startswith("ADE_val_") else "training"

    def files(self, ids: list[str], *, labeled: bool) -> SampleFiles:
        images = [self.root / "images" / self._folder(i) / f"{i}.jpg" for i in ids]
        masks = [self.root / "annotations" / self._folder(i) / f"{i}.png" for i in ids] if labeled else None
        return SampleFiles(images, masks, self.label_map)

    def entry_id(self, entry: str) -> str:
        return _file_stem(entry)
