"""CPU-side transforms run in DataLoader workers: weak augmentation for training, none for eval.

A transform is called as ``transform(image, mask, rng)`` with an RGB PIL image, a mode-"L"
class-index PIL mask (or None for unlabelled data) and a ``numpy.random.Generator``; it returns
``(image uint8 [3,H,W], mask int64 [H,W] or None, valid bool [H,W])``. Images stay uint8:
normalisation and photometric (strong) augmentation happen later, on the device.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from PIL import Image

TransformOutput = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]

IGNORE_INDEX = 255
"""The mask value of unlabelled pixels everywhere after a mask is read: losses, mixing, padding
and scores all use it. A dataset whose files mark unlabelled pixels otherwise
(``data.ignore_index``, the standard benchmarks' label maps) is mapped to it when read."""


class Transform(Protocol):
    """The call signature shared by :class:`WeakTransform` and :class:`EvalTransform`."""

    def __call__(self, image: Image.Image, mask: Image.Image | None, rng: np.random.Generator) -> TransformOutput: ...


def _to_tensors(image: np.ndarray, mask: np.ndarray | None, valid: np.ndarray) -> TransformOutput:
    """HWC uint8 image, HW mask and HW validity as contiguous, writable torch tensors (copies)."""
    image_t = torch.from_numpy(np.array(image.transpose(2, 0, 1), order="C"))
    mask_t = None if mask is None else torch.from_numpy(np.array(mask, dtype=np.int64, order="C"))
    return image_t, mask_t, torch.from_numpy(np.array(valid, order="C"))


class WeakTransform:
    """Random rescale, pad to the crop size, random square crop, random horizontal flip.

    The image is resized bilinearly and the mask by nearest neighbour, both by one factor drawn
    uniformly from ``scale_range``. Padding (bottom and right) is 0 in the image,
    :data:`IGNORE_INDEX` in the mask and False in ``valid``. Random draws, in order: scale, crop
    top, crop left, flip.
    """

    def __init__(
        self,
        crop_size: int,
        scale_range: tuple[float, float] = (0.5, 2.0),
        flip: bool = True,
    ) -> None:
        if crop_size < 1:
            raise ValueError(f"crop_size must be at least 1, got {crop_size}")
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {scale_range}")
        self.crop_size = crop_size
        self.scale_range = (float(low), float(high))
        self.flip = flip

    def __call__(self, image: Image.Image, mask: Image.Image | None, rng: np.random.Generator) -> TransformOutput:
        scale = rng.uniform(*self.scale_range)
        width, height = image.size
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image_np = np.asarray(image.resize(size, Image.Resampling.BILINEAR))
        mask_np = None if mask is None else np.asarray(mask.resize(size, Image.Resampling.NEAREST))
        valid = np.ones(image_np.shape[:2], dtype=bool)

        crop = self.crop_size
        pad_h, pad_w = max(0, crop - size[1]), max(0, crop - size[0])
        if pad_h or pad_w:
            image_np = np.pad(image_np, ((0, pad_h), (0, pad_w), (0, 0)))
            valid = np.pad(valid, ((0, pad_h), (0, pad_w)), constant_values=False)
            if mask_np is not None:
                mask_np = np.pad(mask_np, ((0, pad_h), (0, pad_w)), constant_values=IGNORE_INDEX)

        top = int(rng.integers(0, image_np.shape[0] - crop + 1))
        left = int(rng.integers(0, image_np.shape[1] - crop + 1))
        window = (slice(top, top + crop), slice(left, left + crop))
        image_np, valid = image_np[window], valid[window]
        mask_np = None if mask_np is None else mask_np[window]

        if self.flip and rng.random() < 0.5:
            image_np, valid = image_np[:, ::-1], valid[:, ::-1]
            mask_np = None if mask_np is None else mask_np[:, ::-1]
        return _to_tensors(image_np, mask_np, valid)


class EvalTransform:
    """No augmentation: the image and mask as tensors, at their original resolution.

    With ``resize_short`` the image alone is resized (bilinear) so that its short side has that
    length; the mask is never resized, since scores are computed at the label resolution.
    With ``center_crop`` = c, image and mask are first cut to their central
    ``min(c, H) x min(c, W)`` region (the "centre crop" evaluation protocol: the cropped region
    is scored against the cropped label). ``valid`` is all True, at the output image size.
    """

    def __init__(self, resize_short: int | None = None, center_crop: int | None = None) -> None:
        if resize_short is not None and resize_short < 1:
            raise ValueError(f"resize_short must be at least 1, got {resize_short}")
        if center_crop is not None and center_crop < 1:
            raise ValueError(f"center_crop must be at least 1, got {center_crop}")
        self.resize_short = resize_short
        self.center_crop = center_crop

    def __call__(
        self, image: Image.Image, mask: Image.Image | None, rng: np.random.Generator | None = None
    ) -> TransformOutput:
        if self.center_crop is not None:
            width, height = image.size
            crop_w, crop_h = min(self.center_crop, width), min(self.center_crop, height)
            left, top = (width - crop_w) // 2, (height - crop_h) // 2
            box = (left, top, left + crop_w, top + crop_h)
            image = image.crop(box)
            mask = None if mask is None else mask.crop(box)
        if self.resize_short is not None:
            width, height = image.size
            factor = self.resize_short / min(width, height)
            size = (max(1, round(width * factor)), max(1, round(height * factor)))
            if size != image.size:
                image = image.resize(size, Image.Resampling.BILINEAR)
        image_np = np.asarray(image)
        mask_np = None if mask is None else np.asarray(mask)
        return _to_tensors(image_np, mask_np, np.ones(image_np.shape[:2], dtype=bool))
