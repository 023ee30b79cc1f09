"""Tests for batched strong augmentation and CutMix/ClassMix mixing."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from dualteacher.models.contract import normalize
from dualteacher.registry import MIXINGS
from dualteacher.semi.mixing import apply_mix, beta_integer, classmix_mask, cutmix_mask, make_mix_mask, random_partner
from dualteacher.semi.photometric import (
    StrongAugConfig,
    color_jitter,
    gaussian_blur,
    hsv_to_rgb,
    rgb_to_hsv,
    strong_photometric,
)

torch.set_num_threads(1)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_normalize_matches_formula() -> None:
    x = torch.rand(2, 3, 4, 5, generator=_gen())
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = normalize(x, mean, std)
    for c in range(3):
        torch.testing.assert_close(out[:, c], (x[:, c] - mean[c]) / std[c])


@pytest.mark.parametrize(
    "cfg",
    [
        StrongAugConfig(color_jitter_p=1.0, grayscale_p=0.0, blur_p=0.0),  # jitter factors alone
        StrongAugConfig(color_jitter_p=0.0, grayscale_p=0.0, blur_p=1.0),  # blur sigma alone
        StrongAugConfig(color_jitter_p=1.0, grayscale_p=0.2, blur_p=1.0),
    ],
)
def test_strong_photometric_per_image_and_reproducible(cfg: StrongAugConfig) -> None:
    image = torch.rand(1, 3, 16, 16, generator=_gen(1))
    batch = image.expand(8, -1, -1, -1).contiguous()
    out_a = strong_photometric(batch, _gen(5), cfg)
    out_b = strong_photometric(batch, _gen(5), cfg)
    assert torch.equal(out_a, out_b)
    assert out_a.min() >= 0.0 and out_a.max() <= 1.0
    for i in range(8):
        for j in range(i + 1, 8):
            assert not torch.allclose(out_a[i], out_a[j]), (i, j)
    assert not torch.equal(out_a, strong_photometric(batch, _gen(6), cfg))


def test_strong_photometric_noop_when_all_probabilities_zero() -> None:
    x = torch.rand(3, 3, 8, 8, generator=_gen(2))
    cfg = StrongAugConfig(color_jitter_p=0.0, grayscale_p=0.0, blur_p=0.0)
    assert torch.equal(strong_photometric(x, _gen(), cfg), x)


def test_strong_photometric_forced_grayscale_has_equal_channels() -> None:
    x = torch.rand(4, 3, 12, 12, generator=_gen(3))
    cfg = StrongAugConfig(grayscale_p=1.0)
    out = strong_photometric(x, _gen(), cfg)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_strong_photometric_apply_probability_is_per_image() -> None:
    x = torch.rand(64, 3, 8, 8, generator=_gen(4))
    cfg = StrongAugConfig(color_jitter_p=0.0, grayscale_p=0.5, blur_p=0.0)
    out = strong_photometric(x, _gen(9), cfg)
    gray = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(1)
    assert 16 <= int(gray.sum()) <= 48
    assert torch.equal(out[~gray], x[~gray])


def test_hsv_round_trip() -> None:
    x = torch.rand(2, 3, 10, 10, generator=_gen(7))
    torch.testing.assert_close(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5, rtol=0)


def test_hue_shift_on_pure_red_matches_torchvision() -> None:
    red = torch.zeros(1, 3, 4, 4)
    red[:, 0] = 1.0
    hsv = rgb_to_hsv(red)
    hsv[:, 0] = torch.remainder(hsv[:, 0] + 1.0 / 3.0, 1.0)
    ours = hsv_to_rgb(hsv)
    reference = TF.adjust_hue(red[0], 1.0 / 3.0)
    torch.testing.assert_close(ours[0], reference, atol=1e-5, rtol=0)
    assert ours[0, 1].min() > 0.99 and ours[0, 0].max() < 1e-5 and ours[0, 2].max() < 1e-5


@pytest.mark.parametrize("shift", [-0.25, -0.1, 0.07, 0.25])
def test_hue_shift_random_image_matches_torchvision(shift: float) -> None:
    x = torch.rand(1, 3, 8, 8, generator=_gen(11))
    hsv = rgb_to_hsv(x)
    hsv[:, 0] = torch.remainder(hsv[:, 0] + shift, 1.0)
    torch.testing.assert_close(hsv_to_rgb(hsv)[0], TF.adjust_hue(x[0], shift), atol=1e-4, rtol=0)


def test_color_jitter_matches_torchvision_per_image() -> None:
    x = torch.rand(3, 3, 8, 8, generator=_gen(8))
    brightness = torch.tensor([0.6, 1.0, 1.4])
    contrast = torch.tensor([1.3, 0.5, 1.0])
    saturation = torch.tensor([0.7, 1.5, 0.0])
    hue = torch.tensor([0.2, -0.15, 0.0])
    ours = color_jitter(x, brightness, contrast, saturation, hue)
    for i in range(3):
        ref = TF.adjust_brightness(x[i], brightness[i].item())
        ref = TF.adjust_contrast(ref, contrast[i].item())
        ref = TF.adjust_saturation(ref, saturation[i].item())
        ref = TF.adjust_hue(ref, hue[i].item())
        torch.testing.assert_close(ours[i], ref, atol=1e-4, rtol=0)


def test_blur_preserves_constant_image_and_smooths() -> None:
    const = torch.full((2, 3, 16, 16), 0.3)
    sigma = torch.tensor([0.5, 2.0])
    torch.testing.assert_close(gaussian_blur(const, sigma, 13), const)
    impulse = torch.zeros(2, 3, 17, 17)
    impulse[:, :, 8, 8] = 1.0
    blurred = gaussian_blur(impulse, sigma, 13)
    torch.testing.assert_close(blurred.sum(dim=(2, 3)), torch.ones(2, 3))
    assert blurred[0, 0, 8, 8] > blurred[1, 0, 8, 8]  # smaller sigma keeps more mass at the centre


def test_beta_integer_moments() -> None:
    samples = beta_integer((20000,), 4.0, 4.0, _gen(12))
    assert abs(samples.mean().item() - 0.5) < 0.01
    assert abs(samples.var().item() - 1.0 / 36.0) < 0.002  # ab / ((a+b)^2 (a+b+1))
    with pytest.raises(ValueError):
        beta_integer((2,), 0.5, 4.0, _gen())


def test_cutmix_mask_is_a_rectangle_with_beta_area() -> None:
    height, width = 32, 48
    mask = cutmix_mask(4000, height, width, _gen(13))
    assert mask.shape == (4000, height, width) and mask.dtype == torch.bool
    rows, cols = mask.any(dim=2), mask.any(dim=1)
    box = rows.unsqueeze(2) & cols.unsqueeze(1)
    assert torch.equal(mask, box)  # the mask is exactly the product of its row and column extents
    for line in (rows, cols):  # extents are contiguous
        idx = torch.arange(line.shape[1])
        first = torch.where(line, idx, line.shape[1]).amin(1)
        last = torch.where(line, idx, -1).amax(1)
        assert torch.equal(line.sum(1), (last - first + 1).clamp_min(0))
    area = mask.float().mean(dim=(1, 2))
    assert abs(area.mean().item() - 0.5) < 0.02  # E[1 - lambda] = 0.5 for Beta(4, 4)
    assert torch.equal(cutmix_mask(5, height, width, _gen(1)), cutmix_mask(5, height, width, _gen(1)))


def test_cutmix_mask_probability() -> None:
    mask = cutmix_mask(2000, 16, 16, _gen(14), p=0.25)
    has_box = mask.flatten(1).any(1).float().mean().item()
    assert abs(has_box - 0.25) < 0.04
    assert not cutmix_mask(10, 16, 16, _gen(14), p=0.0).any()


def test_random_partner_is_a_derangement() -> None:
    gen = _gen(15)
    for batch in (2, 3, 8):
        perm = random_partner(batch, gen)
        assert sorted(perm.tolist()) == list(range(batch))
        assert not (perm == torch.arange(batch)).any()
    assert random_partner(1, gen).tolist() == [0]
    firsts = torch.stack([random_partner(4, gen)[0] for _ in range(600)])
    counts = torch.bincount(firsts, minlength=4)
    assert counts[0] == 0 and counts[1:].min() > 150  # partner uniform over the others


def test_classmix_chooses_half_of_partner_classes() -> None:
    gen = _gen(16)
    labels = torch.zeros(4, 6, 6, dtype=torch.long)
    labels[0, :, :3] = 1
    labels[0, :, 3:] = 4
    labels[1] = torch.arange(36).view(6, 6) % 5  # classes 0..4
    labels[2] = 2
    labels[2, 0, 0] = 255  # ignored pixel: not a class
    labels[3] = torch.arange(36).view(6, 6) % 3
    labels[3, :2] = 255
    perm = torch.tensor([1, 2, 3, 0])
    for _ in range(20):
        mask = classmix_mask(labels, perm, gen, ignore_index=255)
        for i in range(4):
            source = labels[perm[i]]
            present = set(source[source != 255].unique().tolist())
            taken = set(source[mask[i]].unique().tolist())
            assert len(taken) == math.ceil(len(present) / 2)
            assert taken <= present
            expected = torch.isin(source, torch.tensor(sorted(taken))) & (source != 255)
            assert torch.equal(mask[i], expected)


def test_classmix_picks_vary_and_respect_num_classes() -> None:
    labels = (torch.arange(64).view(1, 8, 8) % 6).expand(2, -1, -1).contiguous()
    perm = torch.tensor([1, 0])
    gen = _gen(17)
    picks = {tuple(labels[0][classmix_mask(labels, perm, gen, num_classes=10)[0]].unique().tolist()) for _ in range(30)}
    assert len(picks) > 5 and all(len(p) == 3 for p in picks)
    all_ignored = torch.full((2, 4, 4), 255)
    assert not classmix_mask(all_ignored, perm, gen).any()


def test_apply_mix_shapes_and_label_consistency() -> None:
    batch, height, width = 4, 8, 8
    gen = _gen(18)
    labels = torch.randint(0, 5, (batch, height, width), generator=gen)
    pixel = torch.arange(height * width).view(1, height, width)
    code = (torch.arange(batch).view(-1, 1, 1) * height * width + pixel).float()
    images = torch.stack([code, -code, code * 2], dim=1)  # [B, 3, H, W], value encodes (image, pixel)
    conf = torch.rand(batch, height, width, generator=gen)
    perm = random_partner(batch, gen)
    for kind in MIXINGS:
        mask = make_mix_mask(kind, labels, perm, gen)
        mixed_img = apply_mix(mask, perm, images)
        mixed_lbl = apply_mix(mask, perm, labels)
        mixed_conf = apply_mix(mask, perm, conf)
        assert mixed_img.shape == images.shape and mixed_lbl.shape == labels.shape
        source = mixed_img[:, 0].long()
        src_img, src_pix = source // (height * width), source % (height * width)
        assert torch.equal(src_pix, pixel.expand(batch, -1, -1))  # pixels keep their location
        expected_src = torch.where(mask, perm.view(-1, 1, 1), torch.arange(batch).view(-1, 1, 1))
        assert torch.equal(src_img, expected_src)
        flat_labels, flat_conf = labels.view(-1), conf.view(-1)
        assert torch.equal(mixed_lbl, flat_labels[source])
        assert torch.equal(mixed_conf, flat_conf[source])
        assert torch.equal(mixed_img[:, 1], -mixed_img[:, 0])
        assert torch.equal(mixed_img[:, 2], 2 * mixed_img[:, 0])
        if kind == "none":
            assert not mask.any() and torch.equal(mixed_img, images)
        else:
            assert mask.any()


def test_classmix_mixed_labels_equal_argmax_of_mixed_soft_predictions() -> None:
    gen = _gen(19)
    probs = torch.rand(3, 4, 6, 6, generator=gen).softmax(dim=1)
    conf, labels = probs.max(dim=1)
    perm = random_partner(3, gen)
    mask = make_mix_mask("classmix", labels, perm, gen)
    mixed_conf, mixed_labels = apply_mix(mask, perm, probs).max(dim=1)
    assert torch.equal(apply_mix(mask, perm, labels), mixed_labels)
    assert torch.equal(apply_mix(mask, perm, conf), mixed_conf)


def test_make_mix_mask_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError):
        make_mix_mask("mixup", torch.zeros(2, 4, 4, dtype=torch.long), torch.tensor([1, 0]), _gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_everything_runs_on_cuda_with_a_cuda_generator() -> None:
    device = torch.device("cuda")
    x = torch.rand(4, 3, 32, 32, device=device)
    labels = torch.randint(0, 6, (4, 32, 32), device=device)
    outs = []
    for _ in range(2):
        gen = torch.Generator(device=device).manual_seed(3)
        strong = strong_photometric(x, gen, StrongAugConfig())
        perm = random_partner(4, gen)
        masks = [make_mix_mask(kind, labels, perm, gen) for kind in MIXINGS]
        outs.append((strong, perm, masks))
    assert outs[0][0].device.type == "cuda" and all(m.device.type == "cuda" for m in outs[0][2])
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert all(torch.equal(a, b) for a, b in zip(outs[0][2], outs[1][2]))
