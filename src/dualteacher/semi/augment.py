"""Batched, generator-driven augmentations: normalisation, strong photometric views, CutMix/ClassMix,
and channel dropout of feature maps.

Everything works on whole batches of tensors on any device. All randomness comes from an explicit
``torch.Generator``; random numbers are drawn on the generator's device and moved to the data's
device, and every function draws the same amount of randomness regardless of its probabilities,
so a fixed generator state always gives the same output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from dualteacher.data.transforms import IGNORE_INDEX
from dualteacher.registry import MIXINGS

__all__ = [
    "MixMask",
    "StrongAugConfig",
    "apply_mix",
    "beta_integer",
    "channel_dropout",
    "classmix",
    "classmix_mask",
    "color_jitter",
    "cutmix",
    "cutmix_mask",
    "gaussian_blur",
    "hsv_to_rgb",
    "make_mix_mask",
    "no_mixing",
    "normalize",
    "random_partner",
    "rgb_to_grayscale",
    "rgb_to_hsv",
    "strong_photometric",
]

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision / PIL


def _uniform(
    gen: torch.Generator, shape: Sequence[int], low: float, high: float, device: torch.device
) -> Tensor:
    """Uniform samples in [low, high) drawn from ``gen`` and moved to ``device``."""
    u = torch.rand(tuple(shape), generator=gen, device=gen.device)
    return (low + (high - low) * u).to(device)


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Channel-wise ``(x - mean) / std`` for ``x`` in [0, 1] shaped [B, 3, H, W]."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


@dataclass
class StrongAugConfig:
    """Strong photometric augmentation settings (the usual FixMatch/UniMatch/Dual Teacher values).

    ``blur_kernel`` None derives an odd kernel size covering ±3·sigma_max, capped to the image size.
    """

    color_jitter_p: float = 0.8
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.25
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel: int | None = None


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """Luma of an RGB batch [B, 3, H, W] -> [B, 1, H, W]."""
    w = torch.tensor(_GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB [B, 3, H, W] in [0, 1] -> HSV with all channels in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = x.unbind(dim=1)
    maxc = x.amax(dim=1)
    minc = x.amin(dim=1)
    chroma = maxc - minc
    flat = chroma == 0
    safe_chroma = torch.where(flat, torch.ones_like(chroma), chroma)
    sat = chroma / torch.where(maxc == 0, torch.ones_like(maxc), maxc)
    rc = (maxc - r) / safe_chroma
    gc = (maxc - g) / safe_chroma
    bc = (maxc - b) / safe_chroma
    hue = torch.where(
        maxc == r,
        bc - gc,
        torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc),
    )
    hue = torch.where(flat, torch.zeros_like(hue), hue)
    hue = torch.remainder(hue / 6.0, 1.0)
    return torch.stack((hue, sat, maxc), dim=1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """HSV [B, 3, H, W] (channels in [0, 1]) -> RGB in [0, 1].

    Uses the closed form ``c_n = v - v·s·clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6h) mod 6``
    for n = 5, 3, 1 (R, G, B).
    """
    h, s, v = x.unbind(dim=1)
    n = torch.tensor((5.0, 3.0, 1.0), dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return v.unsqueeze(1) * (1.0 - s.unsqueeze(1) * ramp)


def _blend(a: Tensor, b: Tensor, ratio: Tensor) -> Tensor:
    """``ratio·a + (1 − ratio)·b`` clamped to [0, 1], ``ratio`` per image [B]."""
    r = ratio.view(-1, 1, 1, 1)
    return (r * a + (1.0 - r) * b).clamp(0.0, 1.0)


def color_jitter(x: Tensor, brightness: Tensor, contrast: Tensor, saturation: Tensor, hue: Tensor) -> Tensor:
    """Brightness, contrast, saturation, then hue, with per-image factors [B], as torchvision's ops.

    Brightness/contrast/saturation are blends with black / the mean grey level / the greyscale
    image; ``hue`` is a shift in fractions of a turn. torchvision's ColorJitter applies the four
    operations in a random order; a fixed order is used here (documented simplification).
    """
    x = _blend(x, torch.zeros_like(x), brightness)
    gray_mean = rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    x = _blend(x, gray_mean.expand_as(x), contrast)
    x = _blend(x, rgb_to_grayscale(x).expand_as(x), saturation)
    hsv = rgb_to_hsv(x)
    shifted_hue = torch.remainder(hsv[:, 0] + hue.view(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack((shifted_hue, hsv[:, 1], hsv[:, 2]), dim=1)).clamp(0.0, 1.0)


def _jitter_factors(x: Tensor, gen: torch.Generator, cfg: StrongAugConfig) -> tuple[Tensor, ...]:
    """Per-image (brightness, contrast, saturation, hue) as torchvision's ColorJitter draws them.

    Factors ~ U[max(0, 1 − v), 1 + v] for brightness/contrast/saturation, hue shift ~ U[−hue, hue].
    """
    lows = [max(0.0, 1.0 - cfg.brightness), max(0.0, 1.0 - cfg.contrast), max(0.0, 1.0 - cfg.saturation)]
    highs = [1.0 + cfg.brightness, 1.0 + cfg.contrast, 1.0 + cfg.saturation]
    u = torch.rand((x.shape[0], 4), generator=gen, device=gen.device).to(device=x.device, dtype=x.dtype)
    low = torch.tensor(lows + [-cfg.hue], dtype=x.dtype, device=x.device)
    high = torch.tensor(highs + [cfg.hue], dtype=x.dtype, device=x.device)
    return tuple((low + (high - low) * u).unbind(dim=1))


def _blur_kernel_size(sigma_max: float, height: int, width: int) -> int:
    """Odd kernel size covering ±3·sigma_max, no larger than the image's smaller side."""
    size = 2 * math.ceil(3.0 * sigma_max) + 1
    limit = min(height, width)
    limit -= 1 - limit % 2
    return max(1, min(size, limit))


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with a per-image ``sigma`` [B] via grouped convolution, reflect padding."""
    if kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be odd, got {kernel_size}")
    batch, channels, height, width = x.shape
    half = kernel_size // 2
    offsets = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device)
    sig = sigma.to(device=x.device, dtype=x.dtype).view(-1, 1)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sig) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = kernel.repeat_interleave(channels, dim=0)  # [B*C, k]
    flat = x.reshape(1, batch * channels, height, width)
    flat = F.pad(flat, (half, half, half, half), mode="reflect") if half > 0 else flat
    groups = batch * channels
    flat = F.conv2d(flat, kernel.view(groups, 1, kernel_size, 1), groups=groups)
    flat = F.conv2d(flat, kernel.view(groups, 1, 1, kernel_size), groups=groups)
    return flat.view(batch, channels, height, width)


def strong_photometric(x: Tensor, gen: torch.Generator, cfg: StrongAugConfig) -> Tensor:
    """Strong photometric view of ``x`` ([B, 3, H, W] in [0, 1], before normalisation).

    Per image and independently: colour jitter with probability ``color_jitter_p`` (fixed op order,
    see :func:`color_jitter`), grayscale with probability ``grayscale_p``, Gaussian blur with
    probability ``blur_p`` and sigma ~ U[blur_sigma]. Output clamped to [0, 1].
    """
    batch, _, height, width = x.shape
    apply = torch.rand((batch, 3), generator=gen, device=gen.device).to(x.device)
    jitter_on = (apply[:, 0] < cfg.color_jitter_p).view(-1, 1, 1, 1)
    gray_on = (apply[:, 1] < cfg.grayscale_p).view(-1, 1, 1, 1)
    blur_on = (apply[:, 2] < cfg.blur_p).view(-1, 1, 1, 1)

    x = torch.where(jitter_on, color_jitter(x, *_jitter_factors(x, gen, cfg)), x)
    x = torch.where(gray_on, rgb_to_grayscale(x).expand_as(x), x)

    sigma = _uniform(gen, (batch,), cfg.blur_sigma[0], cfg.blur_sigma[1], x.device)
    size = cfg.blur_kernel or _blur_kernel_size(cfg.blur_sigma[1], height, width)
    x = torch.where(blur_on, gaussian_blur(x, sigma, size), x)
    return x.clamp(0.0, 1.0)


def channel_dropout(features: Sequence[Tensor], p: float, gen: torch.Generator) -> list[Tensor]:
    """Zero whole channels of every feature map [B, C, ...] with probability ``p`` per (image,
    channel), scaling the kept ones by 1/(1 − p) (``nn.Dropout2d``, but reproducible from ``gen``).

    Maps with no channels pass through unchanged.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"channel dropout probability must be in [0, 1), got {p}")
    out = []
    for f in features:
        keep = torch.rand(f.shape[:2], generator=gen, device=gen.device).to(f.device) >= p
        scale = keep.to(f.dtype) / (1.0 - p)
        out.append(f * scale.view(*f.shape[:2], *([1] * (f.dim() - 2))))
    return out


def beta_integer(shape: Sequence[int], a: float, b: float, gen: torch.Generator) -> Tensor:
    """Beta(a, b) samples for positive integer a, b, drawn reproducibly from ``gen``.

    The a-th smallest of (a + b − 1) i.i.d. U(0, 1) is Beta(a, b) distributed (order statistic);
    torch's own Beta/Gamma samplers accept no generator. Returned on the generator's device.
    """
    if a != int(a) or b != int(b) or a < 1 or b < 1:
        raise ValueError(f"beta parameters must be positive integers, got ({a}, {b})")
    count = int(a) + int(b) - 1
    u = torch.rand((*shape, count), generator=gen, device=gen.device)
    return u.sort(dim=-1).values[..., int(a) - 1]


def cutmix_mask(
    batch: int,
    height: int,
    width: int,
    gen: torch.Generator,
    beta: tuple[float, float] = (4.0, 4.0),
    p: float = 1.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """CutMix boxes: bool [B, H, W], True inside a box taken from the partner image.

    Per image λ ~ Beta(beta) (integer parameters, see :func:`beta_integer`); the box has sides
    ``round(H·sqrt(1 − λ))`` × ``round(W·sqrt(1 − λ))`` (area ≈ (1 − λ)·H·W), is placed uniformly
    fully inside the image, and is present with probability ``p`` (otherwise the mask is empty).
    ``device`` defaults to the generator's device.
    """
    out_device = torch.device(device) if device is not None else gen.device
    lam = beta_integer((batch,), beta[0], beta[1], gen).to(out_device)
    u = torch.rand((batch, 3), generator=gen, device=gen.device).to(out_device)
    cut = torch.sqrt(1.0 - lam)
    box_h = torch.round(cut * height).long().clamp(0, height)
    box_w = torch.round(cut * width).long().clamp(0, width)
    present = u[:, 2] < p
    box_h = torch.where(present, box_h, torch.zeros_like(box_h))
    box_w = torch.where(present, box_w, torch.zeros_like(box_w))
    top = torch.minimum((u[:, 0] * (height - box_h + 1)).long(), height - box_h)
    left = torch.minimum((u[:, 1] * (width - box_w + 1)).long(), width - box_w)
    rows = torch.arange(height, device=out_device).view(1, -1)
    cols = torch.arange(width, device=out_device).view(1, -1)
    in_rows = (rows >= top.view(-1, 1)) & (rows < (top + box_h).view(-1, 1))
    in_cols = (cols >= left.view(-1, 1)) & (cols < (left + box_w).view(-1, 1))
    return in_rows.unsqueeze(2) & in_cols.unsqueeze(1)


def classmix_mask(
    labels: Tensor,
    perm: Tensor,
    gen: torch.Generator,
    ignore_index: int = IGNORE_INDEX,
    num_classes: int | None = None,
) -> Tensor:
    """ClassMix masks: bool [B, H, W], True where image i takes the pixel of its partner ``perm[i]``.

    For image i with partner j, ``ceil(n/2)`` of the n classes present in ``labels[j]`` (pixels
    equal to ``ignore_index`` do not count) are chosen uniformly at random, as in the ClassMix
    reference code (``(n + n % 2) / 2``); the mask covers the pixels of ``labels[j]`` in those
    classes. Vectorised: random per-class scores, absent classes ranked last, rank < k selects.
    ``num_classes`` None derives it from the labels (one device synchronisation).
    """
    if labels.dim() != 3:
        raise ValueError(f"labels must be [B, H, W], got {tuple(labels.shape)}")
    batch = labels.shape[0]
    partner = labels[perm.to(labels.device)]
    valid = partner != ignore_index
    if num_classes is None:
        num_classes = int(partner[valid].max().item()) + 1 if bool(valid.any()) else 0
    # Class index ``num_classes`` is a sink for ignored pixels; it is never chosen.
    flat = torch.where(valid, partner, torch.full_like(partner, num_classes)).view(batch, -1)
    present = torch.zeros((batch, num_classes + 1), dtype=torch.bool, device=labels.device)
    present.scatter_(1, flat, True)
    present = present[:, :num_classes]

    scores = torch.rand((batch, num_classes), generator=gen, device=gen.device).to(labels.device)
    scores = torch.where(present, scores, torch.full_like(scores, 2.0))
    order = scores.argsort(dim=1)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(num_classes, device=labels.device).expand(batch, -1))
    count = present.sum(dim=1)
    chosen = ranks < ((count + 1) // 2).view(-1, 1)
    chosen = torch.cat((chosen, torch.zeros((batch, 1), dtype=torch.bool, device=labels.device)), dim=1)
    return chosen.gather(1, flat).view_as(partner)


def random_partner(batch: int, gen: torch.Generator) -> Tensor:
    """Partner indices [B] on the generator's device: a random cyclic permutation.

    The images are visited in a uniformly random order and each takes the next one in that order
    as its partner, so for B > 1 nobody mixes with itself (a derangement) and each image's partner
    is uniform over the other images. B = 1 gives [0].
    """
    order = torch.randperm(batch, generator=gen, device=gen.device)
    perm = torch.empty_like(order)
    perm[order] = order.roll(-1)
    return perm


def apply_mix(mask: Tensor, perm: Tensor, tensor: Tensor) -> Tensor:
    """``where(mask, tensor[perm], tensor)`` for tensors [B, H, W] or [B, C, H, W].

    Calling it with the same ``mask``/``perm`` on images, pseudo-labels, confidences and valid-pixel
    masks keeps them consistent by construction. Mixing argmax labels and their confidences this
    way equals the official ClassMix route of mixing the teacher's soft predictions and re-taking
    the argmax: each mixed pixel is a copy of one source pixel, so its argmax is that pixel's.
    """
    if tensor.dim() == 4:
        mask = mask.unsqueeze(1)
    elif tensor.dim() != 3:
        raise ValueError(f"expected a [B, H, W] or [B, C, H, W] tensor, got {tuple(tensor.shape)}")
    return torch.where(mask, tensor[perm.to(tensor.device)], tensor)


class MixMask(Protocol):
    """A mixing of :data:`~dualteacher.registry.MIXINGS`: labels [B, H, W] (shape, device and, for
    ClassMix, classes), partners and generator -> bool mask [B, H, W], True where a pixel comes
    from the partner. ``beta`` and ``p`` are CutMix's; ``ignore_index`` and ``num_classes`` ClassMix's."""

    def __call__(
        self, labels: Tensor, perm: Tensor, gen: torch.Generator, *,
        beta: tuple[float, float], p: float, ignore_index: int, num_classes: int | None,
    ) -> Tensor: ...


def cutmix(
    labels: Tensor, perm: Tensor, gen: torch.Generator, *,
    beta: tuple[float, float], p: float, ignore_index: int, num_classes: int | None,
) -> Tensor:
    """CutMix as a :class:`MixMask` (:func:`cutmix_mask`)."""
    batch, height, width = labels.shape
    return cutmix_mask(batch, height, width, gen, beta=beta, p=p, device=labels.device)


def classmix(
    labels: Tensor, perm: Tensor, gen: torch.Generator, *,
    beta: tuple[float, float], p: float, ignore_index: int, num_classes: int | None,
) -> Tensor:
    """ClassMix as a :class:`MixMask` (:func:`classmix_mask`)."""
    return classmix_mask(labels, perm, gen, ignore_index=ignore_index, num_classes=num_classes)


def no_mixing(
    labels: Tensor, perm: Tensor, gen: torch.Generator, *,
    beta: tuple[float, float], p: float, ignore_index: int, num_classes: int | None,
) -> Tensor:
    """No mixing: an all-False mask."""
    return torch.zeros_like(labels, dtype=torch.bool)


def make_mix_mask(
    kind: str,
    labels: Tensor,
    perm: Tensor,
    gen: torch.Generator,
    *,
    beta: tuple[float, float] = (4.0, 4.0),
    p: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
    num_classes: int | None = None,
) -> Tensor:
    """Mixing mask [B, H, W] of the mixing ``kind`` of :data:`~dualteacher.registry.MIXINGS`
    (ValueError for an unknown one); see :class:`MixMask` for the arguments."""
    mixing: MixMask = MIXINGS.get(kind)
    return mixing(labels, perm, gen, beta=beta, p=p, ignore_index=ignore_index, num_classes=num_classes)
