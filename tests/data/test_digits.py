"""The built-in digit-scenes demo: determinism, exact masks, no train/val leakage, caching."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dualteacher.data import digits
from dualteacher.data.folder import read_classes
from dualteacher.data.registry import open_source

STROKE = digits.SceneStyle().stroke


def _split(root: Path, name: str) -> list[str]:
    return open_source("folder", root).split_ids(name)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits") / "data"
    return digits.generate_digit_scenes(root, num_train=300, num_val=40, size=48, seed=3)


def test_same_seed_is_byte_identical_and_seed_matters(tmp_path: Path) -> None:
    first = _files(digits.generate_digit_scenes(tmp_path / "a", num_train=20, num_val=10, size=48, seed=0))
    second = _files(digits.generate_digit_scenes(tmp_path / "b", num_train=20, num_val=10, size=48, seed=0))
    other = _files(digits.generate_digit_scenes(tmp_path / "c", num_train=20, num_val=10, size=48, seed=1))
    assert len(first) == 2 * 30 + 5
    assert first == second
    assert first.keys() == other.keys()
    assert sum(first[k] != other[k] for k in first if k.startswith("images/")) == 30


def test_masks_are_the_thresholded_digits_and_images_show_them(scenes: Path) -> None:
    mnist, _ = digits.load_mnist()
    records = json.loads((scenes / "scenes.json").read_text())
    strong_pixels = 0
    for sample_id in _split(scenes, "train")[:60] + _split(scenes, "val")[:20]:
        image = np.asarray(Image.open(scenes / "images" / f"{sample_id}.png"))
        mask_file = Image.open(scenes / "masks" / f"{sample_id}.png")
        assert mask_file.mode == "P"
        mask = np.asarray(mask_file)
        expected = np.zeros_like(mask)
        for rec in records[sample_id]:
            shape = digits.glyph(mnist[rec["source"]], rec["size"], STROKE) > 127
            box = expected[rec["top"] : rec["top"] + rec["size"], rec["left"] : rec["left"] + rec["size"]]
            box[shape] = 1 + rec["digit"]
        np.testing.assert_array_equal(mask, expected)
        top = records[sample_id][-1]
        intensity = digits.glyph(mnist[top["source"]], top["size"], STROKE).astype(int)
        window = image[top["top"] : top["top"] + top["size"], top["left"] : top["left"] + top["size"]].astype(int)
        # The topmost digit is blended with alpha = intensity / 255, so its colour error is at most 255 - intensity.
        shown = intensity > 127
        error = np.abs(window - np.array(top["colour"])).max(axis=2)
        assert np.all(error[shown] <= 255 - intensity[shown] + 1)
        strong_pixels += int((intensity >= 230).sum())
    assert strong_pixels > 1000


def test_default_style_places_whole_unoccluded_thick_digits(scenes: Path) -> None:
    records = json.loads((scenes / "scenes.json").read_text())
    style = digits.SceneStyle()
    counts = [len(recs) for recs in records.values()]
    assert min(counts) >= 1 and max(counts) <= style.max_digits
    for recs in records.values():
        boxes = [(r["top"], r["left"], r["size"]) for r in recs]
        for i, (t, x, s) in enumerate(boxes):
            assert round(style.digit_size[0] * 48) <= s <= round(style.digit_size[1] * 48)
            for t2, x2, s2 in boxes[i + 1 :]:
                assert t + s <= t2 or t2 + s2 <= t or x + s <= x2 or x2 + s2 <= x, "digits overlap"
    mnist, _ = digits.load_mnist()
    thin = (digits.glyph(mnist[0], 40, 0) > 127).sum()
    assert (digits.glyph(mnist[0], 40, style.stroke) > 127).sum() > 1.3 * thin


def test_style_is_part_of_the_cache_key_and_validated(tmp_path: Path) -> None:
    old = digits.SceneStyle(max_digits=4, digit_size=(26 / 64, 48 / 64), stroke=0, overlap=True)
    a = digits.ensure_digit_scenes(tmp_path, num_train=4, num_val=2, size=32, seed=0)
    b = digits.ensure_digit_scenes(tmp_path, num_train=4, num_val=2, size=32, seed=0, style=old)
    assert a != b
    assert json.loads((b / "meta.json").read_text())["style"]["overlap"] is True
    with pytest.raises(ValueError, match="invalid scene style"):
        digits.SceneStyle(digit_size=(0.8, 0.5))


def test_train_and_val_use_disjoint_digit_images(scenes: Path) -> None:
    _, labels = digits.load_mnist()
    records = json.loads((scenes / "scenes.json").read_text())
    sources: dict[str, set[int]] = {"train": set(), "val": set()}
    for sample_id, recs in records.items():
        split = sample_id.split("_")[0]
        for rec in recs:
            assert labels[rec["source"]] == rec["digit"]
            assert rec["source"] == 500 * rec["digit"] + rec["rank"]
            assert (rec["rank"] < 400) if split == "train" else (rec["rank"] >= 400)
            sources[split].add(rec["source"])
    assert sources["train"] and sources["val"]
    assert not sources["train"] & sources["val"]
    meta = json.loads((scenes / "meta.json").read_text())
    assert meta["splits"]["train"]["digit_ranks"] == [0, 400]
    assert meta["splits"]["val"]["digit_ranks"] == [400, 500]


def test_layout_classes_and_coverage(scenes: Path) -> None:
    assert read_classes(scenes) == ["background"] + [f"digit_{d}" for d in range(10)]
    train = _split(scenes, "train")
    assert len(train) == 300 and len(_split(scenes, "val")) == 40
    present = set()
    for sample_id in train:
        present |= set(np.unique(np.asarray(Image.open(scenes / "masks" / f"{sample_id}.png"))).tolist())
    assert present == set(range(11))
    source = open_source("folder", scenes)
    dataset = source.dataset(source.split_ids("val"), labeled=True)
    sample = dataset[0]
    assert sample["image"].shape == (3, 48, 48) and sample["mask"].shape == (48, 48)
    assert int(sample["mask"].max()) >= 1


def test_backgrounds_are_coloured_and_varied(scenes: Path) -> None:
    per_image = []
    for sample_id in _split(scenes, "train")[:40]:
        image = np.asarray(Image.open(scenes / "images" / f"{sample_id}.png")).astype(float)
        per_image.append(image.reshape(-1, 3).mean(axis=0))
    means = np.array(per_image)
    assert means.std(axis=0).min() > 30
    assert np.abs(means[:, 0] - means[:, 1]).max() > 60


def test_ensure_reuses_cache_and_replaces_incomplete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    params: dict[str, Any] = {"num_train": 8, "num_val": 4, "size": 32, "seed": 5}
    path = digits.ensure_digit_scenes(tmp_path, **params)
    assert path == tmp_path / f"digits-v{digits.GENERATOR_VERSION}-s32-t8-v4-seed5"
    assert len(_split(path, "train")) == 8
    mtime = (path / "meta.json").stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> Path:
        raise AssertionError("regenerated a cached dataset")

    with monkeypatch.context() as patch:
        patch.setattr(digits, "generate_digit_scenes", fail)
        assert digits.ensure_digit_scenes(tmp_path, **params) == path
    assert (path / "meta.json").stat().st_mtime_ns == mtime

    (path / "images" / "train_00003.png").unlink()
    assert digits.ensure_digit_scenes(tmp_path, **params) == path
    assert (path / "images" / "train_00003.png").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_ensure_uses_env_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUALTEACHER_CACHE", str(tmp_path / "cache"))
    path = digits.ensure_digit_scenes(num_train=2, num_val=1, size=32, seed=0)
    assert path.parent == tmp_path / "cache"
    assert json.loads((path / "meta.json").read_text())["num_train"] == 2


def test_generation_refuses_non_empty_dir_and_tiny_scenes(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="non-empty"):
        digits.generate_digit_scenes(tmp_path / "x", num_train=1, num_val=1, size=32)
    with pytest.raises(ValueError, match="at least 32"):
        digits.generate_digit_scenes(tmp_path / "y", num_train=1, num_val=1, size=16)
