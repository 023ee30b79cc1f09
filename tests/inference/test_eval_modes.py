"""Evaluation modes: whole / centre crop / sliding window, flip and multi-scale TTA, scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from dualteacher.config import load_config
from dualteacher.data.build import val_transform
from dualteacher.data.registry import open_source
from dualteacher.data.transforms import EvalTransform
from dualteacher.inference.modes import EvalSettings, build_predictor, evaluate_split, resize_factor


def pixelwise_model(num_classes: int = 5) -> nn.Module:
    """A 1x1-conv network: translation-equivariant, every pixel predicted on its own."""
    torch.manual_seed(0)
    return nn.Conv2d(3, num_classes, kernel_size=1)


def test_slide_equals_whole_for_a_translation_equivariant_model() -> None:
    model = pixelwise_model()
    images = torch.rand(2, 3, 40, 57)
    with torch.no_grad():
        whole = model(images)
        for tile, stride in ((24, 16), (16, 16), (40, 7), (64, None)):
            slide = build_predictor(model, EvalSettings(mode="slide", tile=tile, stride=stride))(images)
            assert slide.shape == whole.shape
            torch.testing.assert_close(slide, whole.log_softmax(1), atol=1e-5, rtol=1e-5)
            assert torch.equal(slide.argmax(1), whole.argmax(1))


def test_slide_covers_every_pixel_and_averages_overlaps() -> None:
    seen: list[tuple[int, ...]] = []

    def constant(images: Tensor) -> Tensor:
        seen.extend([tuple(images.shape[-2:])] * images.shape[0])  # one entry per window
        return torch.zeros(images.shape[0], 3, *images.shape[-2:])

    out = build_predictor(constant, EvalSettings(mode="slide", tile=16, stride=10), num_classes=3)(
        torch.rand(1, 3, 30, 16)
    )
    assert seen == [(16, 16), (16, 16), (16, 16)]  # rows start at 0, 10 and 14 (the last aligned to the edge)
    torch.testing.assert_close(out.exp(), torch.full((1, 3, 30, 16), 1 / 3))


def test_plain_settings_return_the_network_itself() -> None:
    model = pixelwise_model()
    assert build_predictor(model, EvalSettings()) is model
    assert build_predictor(model, EvalSettings(mode="center", tile=32)) is model
    assert not EvalSettings(flip=True).is_plain


def test_flip_averages_the_mirrored_prediction() -> None:
    def ramp(images: Tensor) -> Tensor:  # class 0 grows to the right: not flip-equivariant
        x = torch.linspace(-3, 3, images.shape[-1]).expand(images.shape[0], 1, images.shape[-2], -1)
        return torch.cat([x, torch.zeros_like(x)], 1)

    images = torch.rand(1, 3, 8, 12)
    plain = ramp(images).softmax(1)
    flipped = build_predictor(ramp, EvalSettings(flip=True))(images).exp()
    torch.testing.assert_close(flipped, (plain + plain.flip(-1)) / 2)
    torch.testing.assert_close(flipped, flipped.flip(-1))


def test_multi_scale_and_resize_come_back_to_the_input_size() -> None:
    model = pixelwise_model(4)
    images = torch.rand(3, 1, 1).expand(1, 3, 30, 44).contiguous()  # constant image: any scale agrees
    expected = model(images).log_softmax(1)
    for settings in (
        EvalSettings(scales=(0.5, 0.75, 1.5)),
        EvalSettings(resize=(64, 20)),
        EvalSettings(mode="slide", tile=16, scales=(0.75, 1.25), flip=True),
    ):
        with torch.no_grad():
            out = build_predictor(model, settings, num_classes=4)(images)
        assert out.shape == (1, 4, 30, 44)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_resize_factor_is_mmseg_keep_ratio() -> None:
    assert resize_factor(512, 683, (2048, 512)) == pytest.approx(1.0)
    assert resize_factor(375, 500, (2048, 512)) == pytest.approx(512 / 375)
    assert resize_factor(256, 2048, (2048, 512)) == pytest.approx(1.0)  # the long side caps it
    assert resize_factor(100, 100, None) == 1.0


def test_center_crop_cuts_image_and_label_alike() -> None:
    y, x = np.mgrid[:40, :57]
    image = Image.fromarray(np.stack([x, y, x + y], axis=2).astype(np.uint8))
    mask = Image.fromarray((x % 7).astype(np.uint8))
    img, msk, valid = EvalTransform(center_crop=32)(image, mask)
    assert msk is not None and img.shape == (3, 32, 32) and msk.shape == (32, 32) and valid.all()
    assert int(img[0, 0, 0]) == 12 and int(img[1, 0, 0]) == 4  # top-left = (x=12, y=4)
    np.testing.assert_array_equal(msk.numpy(), (x % 7)[4:36, 12:44])
    img, msk, _ = EvalTransform(center_crop=48)(image, mask)  # a side shorter than the crop stays whole
    assert msk is not None and img.shape == (3, 40, 48) and msk.shape == (40, 48)


def test_settings_follow_the_config_and_refuse_bad_values() -> None:
    cfg = load_config(None, ["data.crop_size=48", "data.eval_mode=center", "data.eval_scales=[0.5, 1.0]"])
    settings = EvalSettings.from_config(cfg.data)
    assert (settings.mode, settings.tile, settings.scales) == ("center", 48, (0.5, 1.0))
    assert settings.transform().center_crop == val_transform(cfg.data).center_crop == 48
    slide = EvalSettings.from_config(
        load_config(None, ["data.eval_mode=slide", "data.eval_tile=64", "data.eval_stride=40"]).data
    )
    assert (slide.tile, slide.stride) == (64, 40) and val_transform(load_config(None, []).data).center_crop is None
    for bad in ({"mode": "tiles"}, {"stride": 600}, {"scales": ()}, {"scales": (0.0,)}, {"resize": (0, 512)}):
        with pytest.raises(ValueError):
            EvalSettings(**bad)


def _folder_tree(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "splits").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (36 + 4 * i, 50, 3), dtype=np.uint8)).save(root / "images" / f"s{i}.png")
        labels = rng.integers(0, 5, (36 + 4 * i, 50)).astype(np.uint8)
        labels[:3] = 255
        Image.fromarray(labels).save(root / "masks" / f"s{i}.png")
    (root / "classes.txt").write_text("\n".join(f"c{i}" for i in range(5)) + "\n")
    (root / "splits" / "val.txt").write_text("s0\ns1\ns2\n")
    return root


def test_scores_are_at_label_resolution_over_the_whole_split(tmp_path: Path) -> None:
    source = open_source("folder", _folder_tree(tmp_path / "data"))
    model = pixelwise_model()
    device = torch.device("cpu")
    with torch.no_grad():
        whole, whole_conf = evaluate_split(model, source, "val", EvalSettings(), device, batch_size=2)
        slide, _ = evaluate_split(model, source, "val", EvalSettings(mode="slide", tile=24, stride=16), device)
        flip, _ = evaluate_split(model, source, "val", EvalSettings(flip=True, scales=(1.0, 1.0)), device)
        _, center_conf = evaluate_split(model, source, "val", EvalSettings(mode="center", tile=32), device)
    assert slide.iou == pytest.approx(whole.iou) and flip.iou == pytest.approx(whole.iou)
    assert int(whole_conf.sum()) == sum((h - 3) * 50 for h in (36, 40, 44))  # every labelled pixel, once
    assert int(center_conf.sum()) == (31 + 32 + 32) * 32  # the central 32x32 regions minus ignored rows


def test_override_replaces_only_what_is_given() -> None:
    run = EvalSettings(mode="slide", tile=64, stride=40, flip=True, scales=(0.5, 1.0))
    assert run.override() == run
    assert run.override(mode="whole", flip=False) == EvalSettings(mode="whole", tile=64, stride=40, scales=(0.5, 1.0))
    assert run.override(tile=32).stride is None  # the run's stride belonged to its tile
    assert run.override(tile=32, stride=8).stride == 8
    assert EvalSettings(mode="center", tile=48).for_whole_images() == EvalSettings(mode="whole", tile=48)
    assert run.for_whole_images() is run
    with pytest.raises(ValueError, match="stride"):
        run.override(stride=80)
