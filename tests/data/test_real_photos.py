"""Own data as it really arrives (issue 24 §1b): phone photos with an EXIF orientation, masks
saved as JPEG, images cut short by an interrupted copy. Each is read one way by training,
``check-data`` and ``predict``, and every problem is found before iteration 1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from dualteacher.data.check import check_data, preflight
from dualteacher.data.core import ORIENTATION_TAG, DataError, load_image
from dualteacher.data.registry import open_source
from dualteacher.training.loop import Trainer

from scenes import make_scenes, scenes_config

SIDE = 32
# The transpose that stores an upright picture so that its EXIF orientation shows it upright again
# (the inverse of what the tag asks a viewer to do).
STORE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _upright_scene(width: int = SIDE, height: int = SIDE) -> tuple[Image.Image, np.ndarray]:
    """A grey picture with a red 16x8 block in its left half (no symmetry maps it onto itself),
    edges on the 8-pixel JPEG grid so JPEG keeps them; and its mask (1 on the block)."""
    picture = np.full((height, width, 3), 90, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    picture[8:16, 0:16] = (220, 30, 30)
    mask[8:16, 0:16] = 1
    return Image.fromarray(picture), mask


def _save_photo(upright: Image.Image, path: Path, orientation: int) -> None:
    """``upright`` stored as a phone stores it: pixels turned, and the tag that turns them back."""
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    stored = upright if orientation == 1 else upright.transpose(STORE[orientation])
    stored.save(path, quality=95, subsampling=0, exif=exif)


def _red(picture: np.ndarray) -> np.ndarray:
    """The block's pixels of an [H, W, 3] picture."""
    return picture[..., 0] > 155


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum()) if a.shape == b.shape else 0.0


def _folder(root: Path, classes: list[str]) -> Path:
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir(parents=True)
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in classes))
    return root


def _split(root: Path, name: str, ids: list[str]) -> None:
    (root / "splits" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))


@pytest.mark.parametrize("orientation", [1, 2, 3, 4, 5, 6, 7, 8])
def test_training_reads_a_tagged_photo_upright_like_its_mask(tmp_path: Path, orientation: int) -> None:
    root = _folder(tmp_path / "photos", ["background", "block"])
    upright, mask = _upright_scene()
    _save_photo(upright, root / "images" / "photo.jpg", orientation)
    Image.fromarray(mask).save(root / "masks" / "photo.png")
    _split(root, "train", ["photo"])

    with Image.open(root / "images" / "photo.jpg") as raw:
        assert _iou(_red(np.asarray(ImageOps.exif_transpose(raw))), mask == 1) == 1.0  # PIL's reference agrees
        stored_grid = _red(np.asarray(raw.convert("RGB")))  # what training read before: the stored pixels
    assert (_iou(stored_grid, mask == 1) == 1.0) == (orientation == 1)

    source = open_source("folder", root)
    sample = source.dataset(["photo"], labeled=True)[0]
    image, target = sample["image"].permute(1, 2, 0).numpy(), sample["mask"].numpy()
    assert _iou(_red(image), target == 1) == 1.0
    np.testing.assert_array_equal(np.asarray(load_image(root / "images" / "photo.jpg")), image)
    report = check_data(source, {"labeled": "train"}, full=False)
    orientations = [(f.severity, f.kind) for f in report.findings if f.kind == "image-orientation"]
    assert orientations == ([] if orientation == 1 else [("warning", "image-orientation")])  # square: size can't tell


def test_check_data_reports_every_turned_photo_with_the_fix(tmp_path: Path) -> None:
    root = _folder(tmp_path / "phone", ["background", "block"])
    wide, wide_mask = _upright_scene(width=40, height=24)
    square, square_mask = _upright_scene()
    photos = {  # id: (picture, orientation, mask as saved)
        "upright_mask": (wide, 6, wide_mask),
        "stored_mask": (wide, 6, np.asarray(Image.fromarray(wide_mask).transpose(STORE[6]))),
        "flipped": (square, 3, square_mask),
        "plain": (wide, 1, wide_mask),
        "unlabelled": (wide, 8, None),
    }
    for sample_id, (picture, orientation, mask) in photos.items():
        _save_photo(picture, root / "images" / f"{sample_id}.jpg", orientation)
        if mask is not None:
            Image.fromarray(mask).save(root / "masks" / f"{sample_id}.png")
    _split(root, "labeled", ["upright_mask", "stored_mask", "flipped", "plain"])
    _split(root, "unlabeled", ["unlabelled"])
    _split(root, "val", ["plain"])

    report = check_data(open_source("folder", root), {"labeled": "labeled", "unlabeled": "unlabeled"}, full=False)
    found = {(f.severity, f.kind, Path(f.path_or_id).name): f.message for f in report.findings}
    assert set(found) == {
        ("info", "image-orientation", "upright_mask.jpg"),
        ("error", "image-orientation", "stored_mask.jpg"),
        ("warning", "image-orientation", "flipped.jpg"),
        ("info", "image-orientation", "unlabelled.jpg"),
    }
    error = found[("error", "image-orientation", "stored_mask.jpg")]
    assert "EXIF orientation 6 (shown rotated 90 degrees clockwise): read upright (40x24)" in error
    assert "stored_mask.png (24x40) matches the stored pixels (24x40), not the upright image" in error
    assert f"exiftool -n -Orientation=1 -overwrite_original {root / 'images' / 'stored_mask.jpg'};" in error
    assert error.endswith("re-export it from the annotation tool")
    assert "its mask upright_mask.png matches that view" in found[("info", "image-orientation", "upright_mask.jpg")]
    assert "same size either way" in found[("warning", "image-orientation", "flipped.jpg")]

    with pytest.raises(DataError) as caught:  # train's preflight: before iteration 1, nothing written
        Trainer(scenes_config(root, tmp_path / "run"))
    assert "error image-orientation (1):\n  images/stored_mask.jpg: EXIF orientation 6" in str(caught.value)
    assert "warning image-orientation (1):\n  images/flipped.jpg" in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_a_mask_stored_as_jpeg_is_refused_before_training(tmp_path: Path) -> None:
    root = make_scenes(tmp_path / "scenes")
    mask_path = root / "masks" / "train001.png"
    with Image.open(mask_path) as mask:
        mask.save(mask_path, format="JPEG", quality=90)  # a JPEG under a .png name
    report = preflight(scenes_config(root, tmp_path / "run"))
    lossy = [f for f in report.errors if f.kind == "mask-lossy"]
    assert [Path(f.path_or_id).name for f in lossy] == ["train001.png"]
    assert lossy[0].message.startswith("stored as JPEG data (lossy)")
    assert lossy[0].message.endswith(
        "re-export the mask as PNG from the annotation tool (converting this file to PNG keeps the artefacts)"
    )
    with pytest.raises(DataError) as caught:
        Trainer(scenes_config(root, tmp_path / "run"))
    assert "masks/train001.png: stored as JPEG data (lossy)" in str(caught.value)
    assert not (tmp_path / "run").exists()
    with pytest.raises(DataError, match=r"train001\.png is JPEG data \(lossy\).*re-export the mask as PNG"):
        open_source("folder", root).dataset(["train001"], labeled=True)[0]  # the loader refuses it too


def _truncate(path: Path) -> bytes:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return data


def _cut_tail_to_zeros(path: Path) -> bytes:
    """A copy preallocated at full size and interrupted: the second half is zeros (PIL decodes
    such a PNG without an error; only its chunk checksums tell)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
    return data


@pytest.mark.parametrize(("suffix", "damage"), [(".png", _truncate), (".png", _cut_tail_to_zeros), (".jpg", _truncate)])
def test_a_cut_image_stops_train_before_iteration_1_and_warm_checks_read_nothing(
    tmp_path: Path, suffix: str, damage
) -> None:
    root = make_scenes(tmp_path / "scenes")
    bad = root / "images" / f"train002{suffix}"
    if suffix == ".jpg":  # a photo: decoded at 1/8 scale by the check, which still reads all its data
        with Image.open(root / "images" / "train002.png") as png:
            png.save(bad, quality=95)
        (root / "images" / "train002.png").unlink()
    cfg = scenes_config(root, tmp_path / "run")
    cold = preflight(cfg)
    assert cold.errors == [] and cold.files_read == 16  # 8 labelled and val ids: image and mask each
    warm = preflight(cfg)
    assert (warm.files_read, warm.files_cached) == (0, 16)
    assert "checked 8 images and 8 masks (decoded): 0 files read in this process, 16 unchanged" in warm.format()

    original = damage(bad)
    with pytest.raises(DataError) as caught:
        Trainer(cfg)
    message = str(caught.value)
    assert f"error image-unreadable (1):\n  images/train002{suffix}: cannot decode (" in message
    assert "copy the file again from its source, or remove its id from the split lists" in message
    assert not (tmp_path / "run").exists()
    assert preflight(cfg).files_read == 1  # only the changed file is read again

    bad.write_bytes(original)
    assert preflight(cfg).files_read == 1 and preflight(cfg).files_read == 0
