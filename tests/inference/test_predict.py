"""Inference on files: predict reproduces eval, any image mode works, outputs stay inside --out."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dualteacher import load_model
from dualteacher.checkpoint import load_checkpoint, save_checkpoint
from dualteacher.cli import main
from dualteacher.config import load_config
from dualteacher.data.registry import open_source
from dualteacher.inference.metrics import (
    confusion_matrix,
    metrics_from_confusion,
    sliding_window_logits,
    window_starts,
)
from dualteacher.inference.modes import EvalSettings, build_predictor
from dualteacher.inference.predict import class_map_png, output_names
from dualteacher.training.loop import train

from conftest import tiny_overrides


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-iteration run whose head is re-drawn at random, so its predictions vary across pixels."""
    run = tmp_path_factory.mktemp("predict") / "run"
    train(
        load_config(None, tiny_overrides(tiny_data, run, "supervised", train__epochs=1, train__iters_per_epoch=1)),
        progress=False,
    )
    tensors, state = load_checkpoint(run / "best.safetensors")
    gen = torch.Generator().manual_seed(0)
    weight, bias = "model/net.segmentation_head.0.weight", "model/net.segmentation_head.0.bias"
    tensors[weight] = 10 * torch.randn(tensors[weight].shape, generator=gen)
    tensors[bias] = torch.zeros_like(tensors[bias])
    path = run / "varied.safetensors"
    save_checkpoint(path, tensors, state)
    return path


def val_arrays(root: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    source = open_source("folder", root)
    val = source.dataset(source.split_ids("val"), labeled=True)
    samples = [val[i] for i in range(len(val))]
    return [s["image"].permute(1, 2, 0).numpy() for s in samples], [s["mask"].numpy() for s in samples]


def test_predict_reproduces_eval(checkpoint: Path, tiny_data, tmp_path: Path, capsys) -> None:
    root = Path(tiny_data["root"])
    images, masks = val_arrays(root)
    model = load_model(checkpoint)
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    expected = model.logits(batch).argmax(1).numpy()
    assert (np.bincount(expected.ravel()) > 100).sum() >= 3  # a meaningful comparison: not one class everywhere

    assert (
        main(
            [
                "predict",
                str(checkpoint),
                str(root / "images" / "val_*.png"),
                "--out",
                str(tmp_path / "a"),
                "--batch-size",
                "16",
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "predict",
                str(checkpoint),
                str(root / "images"),
                "--out",
                str(tmp_path / "b"),
                "--batch-size",
                "5",
                "--quiet",
            ]
        )
        == 0
    )
    ids = open_source("folder", root).split_ids("val")
    conf = torch.zeros(len(model.classes), len(model.classes), dtype=torch.int64)
    for i, sample_id in enumerate(ids):
        png = Image.open(tmp_path / "a" / f"{sample_id}.png")
        assert png.mode == "P"
        np.testing.assert_array_equal(np.asarray(png), expected[i])
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b" / f"{sample_id}.png")), expected[i])
        conf += confusion_matrix(torch.from_numpy(np.array(png)), torch.from_numpy(masks[i]), len(model.classes))
    capsys.readouterr()
    assert main(["eval", str(checkpoint), "--data", str(root), "--json"]) == 0
    assert metrics_from_confusion(conf).miou == pytest.approx(json.loads(capsys.readouterr().out)["miou"], abs=1e-12)
    manifest = json.loads((tmp_path / "a" / "predictions.json").read_text())
    assert [Path(r["input"]).stem for r in manifest["images"]] == ids and manifest["classes"] == model.classes


def test_class_map_png_round_trip(tmp_path: Path) -> None:
    colours = np.random.default_rng(0).integers(0, 256, (256, 3), dtype=np.uint8)
    mask = np.random.default_rng(1).integers(0, 21, (13, 29))
    (tmp_path / "m.png").write_bytes(class_map_png(mask, colours, 21))
    png = Image.open(tmp_path / "m.png")
    assert png.mode == "P" and png.size == (29, 13)
    np.testing.assert_array_equal(np.asarray(png), mask)
    np.testing.assert_array_equal(np.array(png.getpalette()).reshape(-1, 3)[:21], colours[:21])
    wide = np.random.default_rng(2).integers(0, 300, (5, 7))
    (tmp_path / "w.png").write_bytes(class_map_png(wide, colours, 300))
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "w.png")), wide)


def test_any_image_mode_size_and_orientation(checkpoint: Path, tmp_path: Path) -> None:
    model = load_model(checkpoint)
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    logits = model.logits(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255)[0]
    expected = logits.argmax(0).numpy()
    rgba = np.concatenate([rgb, np.full((37, 53, 1), 7, np.uint8)], axis=2)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rgba).save(folder / "rgba.png")
    Image.fromarray(rgb[:, :, 0]).save(folder / "gray.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the stored pixels must be turned 90 degrees clockwise for display
    Image.fromarray(np.ascontiguousarray(np.rot90(rgb))).save(folder / "rotated.png", exif=exif)

    for source in (
        rgb,
        Image.fromarray(rgb),
        folder / "rgb.png",
        str(folder / "rgba.png"),
        rgba,
        folder / "rotated.png",
    ):
        pred = model.predict(source)
        assert pred.dtype == np.uint8 and pred.shape == (37, 53)
        np.testing.assert_array_equal(pred, expected)
    gray = rgb[:, :, 0]
    np.testing.assert_array_equal(model.predict(folder / "gray.png"), model.predict(np.repeat(gray[:, :, None], 3, 2)))
    np.testing.assert_array_equal(model.predict(gray), model.predict(folder / "gray.png"))

    assert (
        main(
            ["predict", str(checkpoint), str(folder), "--out", str(tmp_path / "out"), "--overlay", "--probs", "--quiet"]
        )
        == 0
    )
    for name in ("rgb", "rgba", "gray", "rotated"):
        assert Image.open(tmp_path / "out" / f"{name}.png").size == (53, 37)
        assert Image.open(tmp_path / "out" / "overlays" / f"{name}.png").size == (53, 37)
    probs = np.load(tmp_path / "out" / "probs" / "rotated.npy")
    assert probs.dtype == np.float16 and probs.shape == (len(model.classes), 37, 53)
    np.testing.assert_allclose(probs.astype(np.float32), logits.softmax(0).numpy(), atol=1e-3)


@pytest.mark.slow
def test_eval_and_predict_read_tagged_photos_upright_alike(checkpoint: Path, tiny_data, tmp_path: Path) -> None:
    """Phone photos (JPEG, EXIF orientation) with masks drawn on the upright view: ``eval`` scores
    exactly the class maps that ``predict`` writes, and both see what training sees."""
    root = tmp_path / "photos"
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir(parents=True)
    shutil.copy(Path(tiny_data["root"]) / "classes.txt", root / "classes.txt")
    model = load_model(checkpoint)
    rng = np.random.default_rng(0)
    store = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    masks = {}
    for orientation, turn in store.items():
        upright = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
        masks[f"tag{orientation}"] = rng.integers(0, len(model.classes), (24, 40), dtype=np.uint8)
        exif = Image.Exif()
        exif[0x0112] = orientation
        (upright if turn is None else upright.transpose(turn)).save(
            root / "images" / f"tag{orientation}.jpg", exif=exif
        )
        Image.fromarray(masks[f"tag{orientation}"]).save(root / "masks" / f"tag{orientation}.png")
    (root / "splits" / "val.txt").write_text("".join(f"{i}\n" for i in masks))

    val = open_source("folder", root).dataset(list(masks), labeled=True)
    conf = torch.zeros(len(model.classes), len(model.classes), dtype=torch.int64)
    classes_predicted: set[int] = set()
    for i, (sample_id, mask) in enumerate(masks.items()):
        predicted = model.predict(root / "images" / f"{sample_id}.jpg")
        classes_predicted |= set(np.unique(predicted).tolist())
        assert predicted.shape == (24, 40)
        seen_in_training = val[i]["image"][None].float() / 255
        np.testing.assert_array_equal(predicted, model.logits(seen_in_training).argmax(1)[0].numpy())
        conf += confusion_matrix(
            torch.from_numpy(predicted.astype(np.int64)), torch.from_numpy(mask), len(model.classes)
        )
    assert len(classes_predicted) >= 3  # not one class everywhere: a real comparison
    scored = model.eval_dataset(root, "val", dataset="folder")
    assert scored.miou == pytest.approx(metrics_from_confusion(conf).miou, abs=1e-12)


def test_outputs_stay_inside_out(checkpoint: Path, tmp_path: Path) -> None:
    picture = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    sources = tmp_path / "in"
    inputs = []
    for relative in ("a/img.png", "b/img.png", "c/IMG.png", "d/..png", "e/..\\..\\evil.png", "f/victim.png"):
        path = sources / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(path, format="PNG")
        inputs.append(str(path))
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"keep me")
    os.symlink(outside, out / "victim.png")

    assert main(["predict", str(checkpoint), *inputs, "--out", str(out), "--quiet"]) == 0
    assert outside.read_bytes() == b"keep me"
    assert not (out / "victim.png").is_symlink()
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(
        ["img.png", "img-2.png", "IMG-3.png", "image.png", "_.._evil.png", "victim.png", "predictions.json"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "outside.png"]
    assert output_names([Path("x/a.png"), Path("y/a.png"), Path("a-2.png")]) == ["a", "a-2", "a-2-2"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "overlays")
    assert main(["predict", str(checkpoint), inputs[0], "--out", str(out), "--overlay", "--quiet"]) == 2
    assert list(elsewhere.iterdir()) == []


def test_missing_input_is_a_clear_error(checkpoint: Path, tmp_path: Path, capsys) -> None:
    assert main(["predict", str(checkpoint), str(tmp_path / "nope.png"), "--out", str(tmp_path / "o")]) == 2
    assert "input not found" in capsys.readouterr().err
    assert main(["predict", str(checkpoint), str(tmp_path / "*.jpg"), "--out", str(tmp_path / "o")]) == 2
    assert "no images" in capsys.readouterr().err


class PixelwiseNet(nn.Module):
    """A 1x1 convolution: exactly translation-equivariant, so tiling cannot change its output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        torch.nn.init.normal_(self.conv.weight, generator=torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_window_starts_cover_the_image_with_the_last_window_at_the_edge() -> None:
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(7, 4, 3) == [0, 3]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert window_starts(3, 4, 3) == [0]


def test_sliding_window_equals_whole_image_for_a_pixelwise_network() -> None:
    net = PixelwiseNet().eval()
    images = torch.rand(2, 3, 37, 53, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = net(images).softmax(1)
        for tile, stride in ((16, None), (16, 5), (40, 40), (64, None)):
            slid = sliding_window_logits(net, images, tile, stride, num_classes=4)
            assert slid.shape == (2, 4, 37, 53)
            torch.testing.assert_close(slid.softmax(1), whole, atol=1e-6, rtol=0)


def test_sliding_window_averages_overlapping_windows() -> None:
    # Each window predicts one probability everywhere, taken from its own top-left pixel.
    height, width, tile, stride = 10, 7, 4, 3
    rows = torch.arange(height, dtype=torch.float32).view(1, 1, -1, 1).expand(1, 1, height, width)
    cols = torch.arange(width, dtype=torch.float32).view(1, 1, 1, -1).expand(1, 1, height, width)
    images = torch.cat([rows, cols, torch.zeros_like(rows)], dim=1)

    def window_value(top: int, left: int) -> float:
        return (1 + top * 10 + left) / 200

    def predict(x: torch.Tensor) -> torch.Tensor:  # x: a batch of windows
        p = torch.tensor([window_value(int(crop[0, 0, 0]), int(crop[1, 0, 0])) for crop in x])
        return torch.stack([p, 1 - p], 1).log().view(-1, 2, 1, 1).expand(-1, 2, x.shape[2], x.shape[3])

    expected = torch.zeros(height, width)
    for i in range(height):
        for j in range(width):
            values = [
                window_value(t, left)
                for t in (0, 3, 6)
                for left in (0, 3)
                if t <= i < t + tile and left <= j < left + tile
            ]
            expected[i, j] = sum(values) / len(values)
    for window_batch in (1, 4, 8):  # 6 windows: one per pass, 4 + 2, all in one pass
        got = sliding_window_logits(predict, images, tile, stride, window_batch=window_batch).exp()[0, 0]
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_slide_mode_of_the_model(checkpoint: Path) -> None:
    model = load_model(checkpoint)
    image = np.random.default_rng(0).integers(0, 256, (40, 90, 3), dtype=np.uint8)
    np.testing.assert_array_equal(model.predict(image, mode="slide", tile=128), model.predict(image))
    tiled = model.predict(image, mode="slide", tile=32, stride=16)
    assert tiled.shape == (40, 90) and tiled.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown evaluation mode"):
        model.predict(image, mode="centre")


def test_predict_follows_the_runs_evaluation_protocol(checkpoint: Path, tmp_path: Path) -> None:
    tensors, state = load_checkpoint(checkpoint)
    state["config"]["data"].update(eval_mode="slide", eval_tile=32, eval_stride=16, eval_flip=True)
    slide = tmp_path / "slide.safetensors"
    save_checkpoint(slide, tensors, state)
    state["config"]["data"].update(eval_mode="center", eval_flip=False)
    center = tmp_path / "center.safetensors"
    save_checkpoint(center, tensors, state)

    model = load_model(slide)
    image = np.random.default_rng(0).integers(0, 256, (40, 90, 3), dtype=np.uint8)
    batch = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    settings = EvalSettings(mode="slide", tile=32, stride=16, flip=True)
    protocol = build_predictor(model.logits, settings, len(model.classes))
    expected = protocol(batch).argmax(1)[0].numpy()
    plain = model.logits(batch).argmax(1)[0].numpy()
    assert (expected != plain).any()  # a meaningful comparison
    np.testing.assert_array_equal(model.predict(image), expected)
    Image.fromarray(image).save(tmp_path / "x.png")
    assert main(["predict", str(slide), str(tmp_path / "x.png"), "--out", str(tmp_path / "a"), "--quiet"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a" / "x.png")), expected)
    assert (
        main(
            [
                "predict",
                str(slide),
                str(tmp_path / "x.png"),
                "--out",
                str(tmp_path / "b"),
                "--quiet",
                "--mode",
                "whole",
                "--no-flip",
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b" / "x.png")), plain)
    np.testing.assert_array_equal(load_model(center).predict(image), plain)  # a centre crop predicts whole images
    assert main(["predict", str(slide), str(tmp_path / "x.png"), "--out", str(tmp_path / "c"), "--stride", "40"]) == 2


def test_a_folder_input_warns_of_the_images_in_its_sub_folders(tmp_path: Path, caplog) -> None:
    from dualteacher.inference.predict import collect_inputs

    for name in (
        "a.png",
        "nested/b.jpg",
        "nested/deeper/c.png",
        "empty/readme.txt",
        ".hidden/d.png",
        "out/predictions.json",  # an earlier predict's --out inside the input folder
        "out/a.png",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        if name.endswith((".txt", ".json")):
            (tmp_path / name).touch()
        else:
            Image.new("RGB", (4, 4)).save(tmp_path / name)
    with caplog.at_level("WARNING", logger="dualteacher"):
        assert collect_inputs([tmp_path]) == [tmp_path / "a.png"]
    [record] = caplog.records
    assert "skipped the images in its sub-folder(s) nested (a folder is not searched recursively)" in record.message
    assert f"'{tmp_path.as_posix()}/**/*.jpg'" in record.message
    caplog.clear()
    with caplog.at_level("WARNING", logger="dualteacher"):
        assert collect_inputs([f"{tmp_path}/nested/**/*.png"]) == [tmp_path / "nested/deeper/c.png"]
    assert not caplog.records
