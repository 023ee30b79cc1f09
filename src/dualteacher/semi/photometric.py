"""Strong photometric augmentation of image batches in [0, 1]: colour jitter, random grayscale and
Gaussian blur, per image (the strong view of FixMatch-style methods and Dual Teacher).

Everything works on whole batches of tensors on any device. All randomness comes from an explicit
``torch.Generator``; random numbers are drawn on the generator's device and moved to the data's
device, and every function draws the same amount of randomness regardless of its probabilities,
so a fixed generator state always gives the same output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision / PIL


def _uniform(gen: torch.Generator, shape: Sequence[int], low: float, high: float, device: torch.device) -> Tensor:
    """Uniform samples in [low, high) drawn from ``gen`` and moved to ``device``."""
    u = torch.rand(tuple(shape), generator=gen, device=gen.device)
    return (low + (high - low) * u).to(device)


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
    low = torch.tensor([*lows, -cfg.hue], dtype=x.dtype, device=x.device)
    high = torch.tensor([*highs, cfg.hue], dtype=x.dtype, device=x.device)
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
