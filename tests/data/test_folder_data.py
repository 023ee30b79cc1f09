"""The folder-layout loader, the (index, aug_seed) protocol, weak/eval transforms, eval collation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualteacher.data.core import DataError, FileListDataset, collate_eval
from dualteacher.data.folder import FolderSource, read_classes
from dualteacher.data.transforms import EvalTransform, WeakTransform


def _write(root: Path, sample_id: str, image: Image.Image, mask: np.ndarray | None, ext: str = ".png") -> None:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    image.save(root / "images" / f"{sample_id}{ext}")
    if mask is not None:
        Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / f"{sample_id}.png")


def _dataset(
    root: Path, ids: list[str], *, labeled: bool, transform: WeakTransform | None = None, num_classes: int | None = None
) -> FileListDataset:
    """The folder layout's samples of ``ids``; with ``num_classes``, a class list of that length
    is written and mask values are checked against it."""
    if num_classes is not None:
        (root / "classes.txt").write_text("".join(f"c{i}\n" for i in range(num_classes)))
    source = FolderSource(root, root / "splits")
    return source.dataset(ids, labeled=labeled, transform=transform, check_classes=num_classes is not None)


def _ramp_scene(height: int = 40, width: int = 56) -> tuple[Image.Image, np.ndarray]:
    """An image whose red/green channels are x/y and a mask equal to x + y: fully asymmetric."""
    y, x = np.mgrid[:height, :width]
    image = np.stack([x, y, np.full_like(x, 7)], axis=2).astype(np.uint8)
    return Image.fromarray(image), (x + y).astype(np.uint8)


def test_missing_mask_is_named(tmp_path: Path) -> None:
    image, mask = _ramp_scene()
    _write(tmp_path, "a", image, mask)
    _write(tmp_path, "b", image, None)
    with pytest.raises(DataError, match=r"masks[/\\]b\.png"):
        _dataset(tmp_path, ["a", "b"], labeled=True)
    assert len(_dataset(tmp_path, ["a", "b"], labeled=False)) == 2
    with pytest.raises(DataError, match=r"images[/\\]c\.jpg"):
        _dataset(tmp_path, ["a", "c"], labeled=False)


def test_many_missing_files_are_summarised(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="and 5 more") as info:
        _dataset(tmp_path, [f"x{i}" for i in range(15)], labeled=False)
    assert "15 file(s) missing" in str(info.value) and "x0.jpg" in str(info.value)


def test_colour_mask_and_size_mismatch_are_refused(tmp_path: Path) -> None:
    image, mask = _ramp_scene()
    _write(tmp_path, "rgb", image, None)
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(tmp_path / "masks" / "rgb.png")
    _write(tmp_path, "small", image, mask[:30])
    dataset = _dataset(tmp_path, ["rgb", "small"], labeled=True)
    with pytest.raises(DataError, match=r"colour.*rgb\.png"):
        dataset[0]
    with pytest.raises(DataError, match=r"masks[/\\]small\.png.*images[/\\]small\.png"):
        dataset[1]


def test_image_modes_become_rgb_and_palette_masks_give_indices(tmp_path: Path) -> None:
    gray = np.arange(20 * 24, dtype=np.uint8).reshape(20, 24)
    rgba = np.dstack([gray, 255 - gray, np.full_like(gray, 9), np.full_like(gray, 100)])
    palette_image = Image.fromarray(gray % 4).convert("P")
    palette_image.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120] + [0] * 756)
    sixteen = Image.fromarray(gray.astype(np.uint16) * 257)
    assert sixteen.mode.startswith("I;16")
    mask = Image.frombytes("P", (24, 20), (gray % 3).tobytes())
    mask.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    cases = {"gray": Image.fromarray(gray), "rgba": Image.fromarray(rgba), "pal": palette_image, "i16": sixteen}
    for name, image in cases.items():
        _write(tmp_path, name, image, None)
        mask.save(tmp_path / "masks" / f"{name}.png")
    dataset = _dataset(tmp_path, list(cases), labeled=True)
    samples = {name: dataset[i] for i, name in enumerate(cases)}
    for sample in samples.values():
        assert sample["image"].dtype == torch.uint8 and sample["image"].shape == (3, 20, 24)
        np.testing.assert_array_equal(sample["mask"].numpy(), gray % 3)
        assert sample["mask"].dtype == torch.int64
    for channel in range(3):
        np.testing.assert_array_equal(samples["gray"]["image"][channel].numpy(), gray)
        np.testing.assert_array_equal(samples["i16"]["image"][channel].numpy(), gray)
    np.testing.assert_array_equal(samples["rgba"]["image"].permute(1, 2, 0).numpy(), rgba[:, :, :3])
    expected_palette = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90], [100, 110, 120]], np.uint8)[gray % 4]
    np.testing.assert_array_equal(samples["pal"]["image"].permute(1, 2, 0).numpy(), expected_palette)


def test_out_of_range_classes_are_refused_when_num_classes_given(tmp_path: Path) -> None:
    image, mask = _ramp_scene()
    mask[:] = 4
    mask[0, 0] = 255
    _write(tmp_path, "a", image, mask)
    assert _dataset(tmp_path, ["a"], labeled=True, num_classes=5)[0]["mask"].max() == 255
    with pytest.raises(DataError, match=r"\[4\].*a\.png"):
        _dataset(tmp_path, ["a"], labeled=True, num_classes=4)[0]


def test_key_seed_drives_augmentation(tmp_path: Path) -> None:
    image, mask = _ramp_scene()
    _write(tmp_path, "a", image, mask, ext=".jpg")
    _write(tmp_path, "b", image, mask)
    dataset = _dataset(tmp_path, ["a", "b"], labeled=True, transform=WeakTransform(24))
    first, again = dataset[(1, 123)], dataset[(1, 123)]
    assert first["index"] == 1
    assert torch.equal(first["image"], again["image"]) and torch.equal(first["mask"], again["mask"])
    others = [dataset[(1, s)] for s in range(124, 130)]
    assert any(not torch.equal(first["mask"], o["mask"]) for o in others)
    assert torch.equal(dataset[1]["mask"], dataset[(1, 1)]["mask"])
    assert torch.equal(dataset[-1]["mask"], dataset[1]["mask"])
    unlabeled = _dataset(tmp_path, ["a", "b"], labeled=False, transform=WeakTransform(24))
    sample = unlabeled[(0, 5)]
    assert set(sample) == {"image", "valid", "index"} and sample["valid"].dtype == torch.bool


def test_weak_transform_shapes_padding_and_alignment() -> None:
    image, mask = _ramp_scene()
    transform = WeakTransform(48, scale_range=(0.5, 2.0))
    flipped = unflipped = padded = 0
    for seed in range(40):
        img, msk, valid = transform(image, Image.fromarray(mask), np.random.default_rng(seed))
        assert img.shape == (3, 48, 48) and img.dtype == torch.uint8
        assert msk is not None and msk.shape == (48, 48) and msk.dtype == torch.int64 and valid.dtype == torch.bool
        assert torch.all(msk[~valid] == 255) and torch.all(img[:, ~valid] == 0)
        assert torch.all(msk[valid] != 255)
        padded += int((~valid).any())
        # Red + green = x + y is the mask wherever the mask is valid (bilinear vs nearest: off by <= 2).
        diff = (img[0].long() + img[1].long() - msk).abs()
        assert int(diff[valid].max()) <= 2
        cols = torch.nonzero(valid.any(dim=0)).flatten()
        red = img[0, valid.any(dim=1).nonzero()[0, 0], cols].long()
        flipped += int(red[0] > red[-1])
        unflipped += int(red[0] < red[-1])
    assert flipped and unflipped and padded


def test_weak_transform_pads_small_images_exactly() -> None:
    image, mask = _ramp_scene(10, 12)
    img, msk, valid = WeakTransform(32, scale_range=(1.0, 1.0), flip=False)(
        image, Image.fromarray(mask), np.random.default_rng(0)
    )
    assert msk is not None and int(valid.sum()) == 120 and bool(valid[:10, :12].all())
    np.testing.assert_array_equal(msk[:10, :12].numpy(), mask)
    np.testing.assert_array_equal(img[:, :10, :12].permute(1, 2, 0).numpy(), np.asarray(image))
    _, none_mask, valid_u = WeakTransform(32)(image, None, np.random.default_rng(0))
    assert none_mask is None and valid_u.shape == (32, 32)


def test_eval_transform_resizes_image_only() -> None:
    image, mask = _ramp_scene(40, 56)
    img, msk, valid = EvalTransform()(image, Image.fromarray(mask), None)
    np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), np.asarray(image))
    assert msk is not None
    np.testing.assert_array_equal(msk.numpy(), mask)
    img, msk, valid = EvalTransform(resize_short=20)(image, Image.fromarray(mask), None)
    assert msk is not None and img.shape == (3, 20, 28) and msk.shape == (40, 56) and valid.shape == (20, 28)


def test_collate_eval_pads_and_records_sizes() -> None:
    a = {
        "image": torch.full((3, 10, 12), 5, dtype=torch.uint8),
        "mask": torch.ones(10, 12, dtype=torch.long),
        "index": 3,
    }
    b = {
        "image": torch.full((3, 7, 15), 9, dtype=torch.uint8),
        "mask": torch.full((7, 15), 2, dtype=torch.long),
        "index": 4,
    }
    batch = collate_eval([a, b])
    assert batch["image"].shape == (2, 3, 10, 15) and batch["mask"].shape == (2, 10, 15)
    assert batch["sizes"].tolist() == [[10, 12], [7, 15]] and batch["sizes"].dtype == torch.long
    assert batch["index"].tolist() == [3, 4]
    assert torch.all(batch["mask"][0, :, 12:] == 255) and torch.all(batch["mask"][1, 7:] == 255)
    assert torch.all(batch["mask"][0, :, :12] == 1) and torch.all(batch["mask"][1, :7] == 2)
    assert torch.all(batch["image"][0, :, :, 12:] == 0) and torch.all(batch["image"][1, :, :7] == 9)
    unlabeled = collate_eval(
        [
            {"image": a["image"], "valid": torch.ones(10, 12, dtype=torch.bool), "index": 0},
            {"image": b["image"], "valid": torch.ones(7, 15, dtype=torch.bool), "index": 1},
        ]
    )
    assert int(unlabeled["valid"].sum()) == 120 + 105 and "mask" not in unlabeled


def test_split_and_class_files(tmp_path: Path) -> None:
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text(" a \n\nb\n  \nc\n")
    source = FolderSource(tmp_path, tmp_path / "splits")
    assert source.split_ids("train") == ["a", "b", "c"]
    (tmp_path / "splits" / "dup.txt").write_text("a\nb\na\n")
    with pytest.raises(DataError, match=r"'a'.*dup\.txt"):
        source.split_ids("dup")
    with pytest.raises(DataError, match=r"splits[/\\]nope\.txt"):
        source.split_ids("nope")
    (tmp_path / "classes.txt").write_text("background\ncat\ndog\n\n")
    assert read_classes(tmp_path) == ["background", "cat", "dog"]
    (tmp_path / "classes.txt").write_text("background\n\ncat\n")
    with pytest.raises(DataError, match="line 2"):
        read_classes(tmp_path)
    with pytest.raises(DataError, match=r"images[/\\]zz\.jpg"):
        source.dataset(["zz"], labeled=False)
    image, _ = _ramp_scene()
    _write(tmp_path, "zz", image, None, ext=".jpeg")
    assert source.dataset(["zz"], labeled=False).image_paths[0].name == "zz.jpeg"
