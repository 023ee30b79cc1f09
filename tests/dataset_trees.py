"""Micro trees of the standard benchmarks in their official layouts (PASCAL VOC, Cityscapes,
ADE20K), 40x56 px, random images and masks that use given stored values in vertical bands:
shared by the reader tests and the layout contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

H, W = 40, 56


def image(seed: int) -> Image.Image:
    """Random RGB pixels, H x W, drawn from ``seed``."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8))


def labels(seed: int, values: list[int]) -> np.ndarray:
    """A label map using every value of ``values`` (in vertical bands), seed-shifted."""
    bands = np.array(values, dtype=np.uint8)[(np.arange(W) * len(values) // W + seed) % len(values)]
    return np.broadcast_to(bands, (H, W)).copy()


def save_palette(path: Path, values: np.ndarray) -> None:
    """``values`` as the indices of a palette PNG (VOC's masks)."""
    mask = Image.frombytes("P", (W, H), values.tobytes())
    mask.putpalette([(7 * i + 100) % 256 for i in range(768)])  # colours unrelated to the indices
    path.parent.mkdir(parents=True, exist_ok=True)
    mask.save(path)


def save_gray(path: Path, values: np.ndarray) -> None:
    """``values`` as a greyscale PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path)


VOC_VALUES = [0, 5, 20, 255]


def make_voc(root: Path, *, train_aug_list: bool = False) -> Path:
    """VOCdevkit/VOC2012 with 4 fine train ids, 2 val ids and 8 more SBD-only ids."""
    voc = root / "VOCdevkit" / "VOC2012"
    train = [f"2007_00000{i}" for i in range(4)]
    val = ["2008_000000", "2008_000001"]
    sbd = [f"2009_00000{i}" for i in range(8)]
    for k, sample_id in enumerate(train + val + sbd):
        (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
        image(k).save(voc / "JPEGImages" / f"{sample_id}.jpg", quality=95)
        if sample_id not in sbd:
            save_palette(voc / "SegmentationClass" / f"{sample_id}.png", labels(k, VOC_VALUES))
        save_gray(voc / "SegmentationClassAug" / f"{sample_id}.png", labels(k, [0, 1, 2]))
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("\n".join(train) + "\n")
    (sets / "val.txt").write_text("\n".join(val) + "\n")
    if train_aug_list:
        (sets / "train_aug.txt").write_text("\n".join((train + sbd)[:10]) + "\n")
    return voc


CITY_IDS = [7, 26, 0, 1, 33]  # road, car, unlabeled, ego vehicle, bicycle


def make_cityscapes(root: Path) -> Path:
    """Cityscapes with 6 train images (2 cities) and 2 val images; labelIds only."""
    layout = {"train": [("aachen", 3), ("bochum", 3)], "val": [("frankfurt", 2)]}
    k = 0
    for split, cities in layout.items():
        for city, count in cities:
            for frame in range(count):
                stem = f"{city}_000000_{frame:06d}"
                folder = root / "leftImg8bit" / split / city
                folder.mkdir(parents=True, exist_ok=True)
                image(k).save(folder / f"{stem}_leftImg8bit.png")
                save_gray(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", labels(k, CITY_IDS))
                k += 1
    return root


ADE_VALUES = [0, 1, 150, 42]


def make_ade(root: Path) -> Path:
    """ADEChallengeData2016 with 6 training and 2 validation images."""
    ade = root / "ADEChallengeData2016"
    names = {
        "training": [f"ADE_train_{i:08d}" for i in range(1, 7)],
        "validation": [f"ADE_val_{i:08d}" for i in (1, 2)],
    }
    k = 0
    for folder, ids in names.items():
        for sample_id in ids:
            (ade / "images" / folder).mkdir(parents=True, exist_ok=True)
            image(k).save(ade / "images" / folder / f"{sample_id}.jpg", quality=95)
            save_gray(ade / "annotations" / folder / f"{sample_id}.png", labels(k, ADE_VALUES))
            k += 1
    return ade
