"""Mixing an unlabelled batch with its pseudo-labels: CutMix and ClassMix masks, partners and
their application to images, labels, confidences and valid maps alike.

Everything works on whole batches of tensors on any device. All randomness comes from an explicit
``torch.Generator``; random numbers are drawn on the generator's device and moved to the data's
device, and every function draws the same amount of randomness regardless of its probabilities,
so a fixed generator state always gives the same output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from dualteacher.data.transforms import IGNORE_INDEX
from dualteacher.registry import MIXINGS


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
        self,
        labels: Tensor,
        perm: Tensor,
        gen: torch.Generator,
        *,
        beta: tuple[float, float],
        p: float,
        ignore_index: int,
        num_classes: int | None,
    ) -> Tensor: ...


def cutmix(
    labels: Tensor,
    perm: Tensor,
    gen: torch.Generator,
    *,
    beta: tuple[float, float],
    p: float,
    ignore_index: int,
    num_classes: int | None,
) -> Tensor:
    """CutMix as a :class:`MixMask` (:func:`cutmix_mask`)."""
    batch, height, width = labels.shape
    return cutmix_mask(batch, height, width, gen, beta=beta, p=p, device=labels.device)


def classmix(
    labels: Tensor,
    perm: Tensor,
    gen: torch.Generator,
    *,
    beta: tuple[float, float],
    p: float,
    ignore_index: int,
    num_classes: int | None,
) -> Tensor:
    """ClassMix as a :class:`MixMask` (:func:`classmix_mask`)."""
    return classmix_mask(labels, perm, gen, ignore_index=ignore_index, num_classes=num_classes)


def no_mixing(
    labels: Tensor,
    perm: Tensor,
    gen: torch.Generator,
    *,
    beta: tuple[float, float],
    p: float,
    ignore_index: int,
    num_classes: int | None,
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
