"""Segmentation losses: supervised cross-entropy and confidence-aware pseudo-label cross-entropy.

Both losses are means over *valid* pixels and return a finite 0 (still attached to the graph)
when no pixel is valid.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .data.transforms import IGNORE_INDEX

__all__ = ["PSEUDO_LOSS_MODES", "pseudo_label_loss", "supervised_ce"]

PSEUDO_LOSS_MODES: tuple[str, ...] = ("pixel", "fraction", "none")
"""Weighting modes accepted by :func:`pseudo_label_loss`."""

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
    always the number of valid pixels in the batch. Modes:

    - ``"pixel"`` (FixMatch/UniMatch): sum of CE over valid pixels with ``conf >= threshold``,
      divided by the number of valid pixels (not by the number of confident ones).
    - ``"fraction"`` (official Dual Teacher): CE over all valid pixels, each weighted by its image's
      fraction of valid pixels with ``conf >= threshold``. Per image for both mixings (the
      official code uses a per-batch fraction for ClassMix).
    - ``"none"``: plain CE over valid pixels.
    """
    if mode not in PSEUDO_LOSS_MODES:
        raise ValueError(f"unknown pseudo-label loss mode {mode!r}; expected one of {PSEUDO_LOSS_MODES}")
    valid = valid.bool()
    target = pseudo.masked_fill(~valid, _SKIP)
    ce = F.cross_entropy(logits, target, ignore_index=_SKIP, reduction="none")
    confident = valid & (conf >= threshold)
    if mode == "pixel":
        weight = confident.to(ce.dtype)
    elif mode == "fraction":
        per_image = confident.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)
        weight = per_image.to(ce.dtype).view(-1, 1, 1) * valid.to(ce.dtype)
    else:
        weight = valid.to(ce.dtype)
    return (ce * weight).sum() / valid.sum().clamp_min(1)
