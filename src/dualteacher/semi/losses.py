"""Segmentation losses: supervised cross-entropy and confidence-aware pseudo-label cross-entropy.

Both losses are means over *valid* pixels and return a finite 0 (still attached to the graph)
when no pixel is valid.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dualteacher.data.transforms import IGNORE_INDEX
from dualteacher.registry import THRESHOLD_MODES

__all__ = ["fraction_weights", "pixel_weights", "pseudo_label_loss", "supervised_ce", "valid_weights"]

_SKIP = -100  # target value ignored by F.cross_entropy; marks invalid pixels internally


def supervised_ce(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Cross-entropy of ``logits`` [B, C, H, W] against ``target`` [B, H, W], mean over non-ignored pixels."""
    total = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    count = (target != ignore_index).sum().clamp_min(1)
    return total / count


def pseudo_label_loss(
    logits: Tensor,
    pseudo: Tensor,
    conf: Tensor,
    valid: Tensor,
    threshold: float = 0.95,
    mode: str = "pixel",
) -> Tensor:
    """Cross-entropy of ``logits`` [B, C, H, W] against pseudo-labels ``pseudo`` [B, H, W].

    ``conf`` [B, H, W] is the teacher's confidence (only compared with the threshold) and ``valid``
    [B, H, W] marks real (non-padding) pixels; invalid pixels never contribute. The normaliser is
    always the number of valid pixels in the batch. ``mode`` (:data:`~dualteacher.registry.THRESHOLD_MODES`,
    ValueError for an unknown one) weights each pixel: :func:`pixel_weights`, :func:`fraction_weights`
    or :func:`valid_weights`.
    """
    weigh = THRESHOLD_MODES.get(mode)
    valid = valid.bool()
    target = pseudo.masked_fill(~valid, _SKIP)
    ce = F.cross_entropy(logits, target, ignore_index=_SKIP, reduction="none")
    weight = weigh(valid & (conf >= threshold), valid).to(ce.dtype)
    return (ce * weight).sum() / valid.sum().clamp_min(1)


def pixel_weights(confident: Tensor, valid: Tensor) -> Tensor:
    """``pixel`` (FixMatch/UniMatch): the valid pixels with ``conf >= threshold`` count, the rest not
    (divided by the number of valid pixels, not by the number of confident ones)."""
    return confident


def fraction_weights(confident: Tensor, valid: Tensor) -> Tensor:
    """``fraction`` (official Dual Teacher): every valid pixel, weighted by its image's fraction of
    confident valid pixels. Per image for both mixings (the official code uses a per-batch fraction
    for ClassMix)."""
    per_image = confident.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)
    return per_image.view(-1, 1, 1) * valid


def valid_weights(confident: Tensor, valid: Tensor) -> Tensor:
    """``none``: plain CE over valid pixels."""
    return valid
