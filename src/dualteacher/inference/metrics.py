"""Honest evaluation: a confusion matrix over the whole val set at the labels' own resolution.

mIoU averages IoU over the classes that occur in the ground truth or the prediction; a class
absent from both has no defined IoU and is excluded (instead of counting as 0 or 1).

Every image is predicted as if it were alone: a batch of images of different sizes (padded to a
common size by ``collate_eval``) is split into groups of equal size with the padding cut off
(:func:`unpadded_groups`), because zero padding changes a network's output (padded pixels enter
the receptive field, and global pooling such as DeepLabV3+'s ASPP image pooling averages over
them). Images of one size still run as one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from dualteacher.data.transforms import IGNORE_INDEX
from dualteacher.models.contract import normalize


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """``[C, C]`` int64 counts, rows = ground truth, columns = prediction; ignored pixels skipped."""
    keep = target != ignore_index
    index = target[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass
class Metrics:
    """Scores derived from a confusion matrix."""

    miou: float
    pixel_accuracy: float
    iou: list[float | None]

    def as_dict(self, class_names: list[str] | None = None) -> dict[str, object]:
        names = class_names or [str(i) for i in range(len(self.iou))]
        return {
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "iou": dict(zip(names, self.iou)),
        }


def metrics_from_confusion(conf: Tensor) -> Metrics:
    """mIoU over classes present in ground truth or prediction, per-class IoU, pixel accuracy."""
    conf = conf.double().cpu()
    tp = conf.diag()
    gt = conf.sum(1)
    pred = conf.sum(0)
    union = gt + pred - tp
    present = union > 0
    iou = torch.where(present, tp / union.clamp(min=1), torch.zeros_like(tp))
    miou = float(iou[present].mean()) if bool(present.any()) else 0.0
    total = float(conf.sum())
    return Metrics(
        miou=miou,
        pixel_accuracy=float(tp.sum()) / total if total else 0.0,
        iou=[float(v) if p else None for v, p in zip(iou.tolist(), present.tolist())],
    )


Predictor = Callable[[Tensor], Tensor]


def logits_predictor(model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> Predictor:
    """Wrap a network so it maps images in [0, 1] to logits at the input resolution."""

    def predict(images: Tensor) -> Tensor:
        return model(normalize(images, mean, std))

    return predict


def window_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of windows of length ``tile`` every ``stride`` pixels covering ``size``,
    the last one aligned to the end; a single window at 0 when ``size <= tile``."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


WINDOW_BATCH = 8
"""Default number of sliding windows per forward pass (see :func:`sliding_window_logits`)."""


def sliding_window_logits(
    predict_fn: Predictor,
    images: Tensor,
    tile: int,
    stride: int | None = None,
    num_classes: int | None = None,
    window_batch: int = WINDOW_BATCH,
) -> Tensor:
    """Score ``images`` [B,3,H,W] window by window: softmax probabilities averaged over overlaps.

    Windows are ``tile`` x ``tile`` crops every ``stride`` pixels (default 2/3 of the tile), the
    last one in each direction aligned to the image edge; a side shorter than the tile is taken
    whole (the network pads it). Returns the log of the averaged probabilities, [B,C,H,W], so
    that ``argmax`` and ``softmax`` of the result behave as for plain logits. ``num_classes`` is
    taken from the first window when not given.

    Windows (all of one size) run in batches: one forward pass takes ``window_batch // B``
    windows of every image (at least one), i.e. at most ``max(window_batch, B)`` crops. The
    result equals one window per pass up to float rounding (each crop is predicted alone by a
    network in eval mode). When a pass runs out of accelerator memory
    (``torch.OutOfMemoryError``), the rest is run with half as many windows per pass, down to
    one window, whose out-of-memory error is raised. Raises ValueError for a ``tile``,
    ``stride`` or ``window_batch`` out of range.
    """
    if tile < 1:
        raise ValueError(f"tile must be at least 1, got {tile}")
    stride = stride if stride is not None else max(1, tile * 2 // 3)
    if not 1 <= stride <= tile:
        raise ValueError(f"stride must be in [1, tile={tile}], got {stride}")
    if window_batch < 1:
        raise ValueError(f"window_batch must be at least 1, got {window_batch}")
    batch, _, height, width = images.shape
    windows = [
        (slice(top, top + tile), slice(left, left + tile))
        for top in window_starts(height, tile, stride)
        for left in window_starts(width, tile, stride)
    ]
    per_pass = max(1, window_batch // batch)
    probs: Tensor | None = None
    count = torch.zeros(1, 1, height, width, device=images.device)
    done = 0
    while done < len(windows):
        chunk = windows[done : done + per_pass]
        crops = torch.cat([images[:, :, rows, cols] for rows, cols in chunk])
        try:
            logits: Tensor | None = predict_fn(crops)
        except torch.OutOfMemoryError:
            if len(chunk) == 1:
                raise
            logits = None
        del crops
        if logits is None:  # out of memory: retry this chunk in halves, outside the handler so its frames are freed
            per_pass = len(chunk) // 2
            if images.is_cuda:
                torch.cuda.empty_cache()
            continue
        # [windows * B, C, h, w], window-major as concatenated
        window_probs = logits.float().softmax(1).unflatten(0, (len(chunk), batch))
        if probs is None:
            channels = num_classes if num_classes is not None else window_probs.shape[2]
            probs = torch.zeros(batch, channels, height, width, device=images.device)
        for (rows, cols), window in zip(chunk, window_probs):
            probs[:, :, rows, cols] += window
            count[:, :, rows, cols] += 1
        done += len(chunk)
    assert probs is not None
    return (probs / count).clamp_min(torch.finfo(torch.float32).tiny).log()


def size_groups(sizes: Sequence[Hashable]) -> list[list[int]]:
    """Positions of ``sizes`` grouped by equal value; groups and their members in first-seen order."""
    groups: dict[Hashable, list[int]] = {}
    for position, size in enumerate(sizes):
        groups.setdefault(size, []).append(position)
    return list(groups.values())


def unpadded_groups(batch: dict[str, Tensor]) -> Iterator[dict[str, Tensor]]:
    """Split a ``collate_eval`` batch into sub-batches of images of one size, padding cut off.

    Each sub-batch holds ``image`` [b,3,h,w] and, when the batch has one, ``mask`` [b,mh,mw],
    both at the true size of its images (``sizes``/``mask_sizes`` of the batch). A batch without
    ``sizes`` (not padded) is yielded whole; so is one whose images all have one size.
    """
    if "sizes" not in batch:
        yield batch
        return
    sizes = [tuple(s) for s in batch["sizes"].tolist()]
    mask_sizes = [tuple(s) for s in batch["mask_sizes"].tolist()] if "mask_sizes" in batch else sizes
    for group in size_groups(list(zip(sizes, mask_sizes))):
        (height, width), (mask_h, mask_w) = sizes[group[0]], mask_sizes[group[0]]
        rows = slice(None) if len(group) == len(sizes) else torch.tensor(group)
        sub = {"image": batch["image"][rows][:, :, :height, :width]}
        if "mask" in batch:
            sub["mask"] = batch["mask"][rows][:, :mask_h, :mask_w]
        yield sub


@torch.no_grad()
def evaluate(
    predictor: Predictor,
    batches: Iterable[dict[str, Tensor]],
    num_classes: int,
    device: torch.device,
) -> tuple[Metrics, Tensor]:
    """Score ``predictor`` over every batch; under DDP the confusion matrix is summed over ranks.

    Each batch holds uint8 ``image`` [B,3,H,W] and int64 ``mask`` [B,H,W] at original resolution,
    as made by ``collate_eval`` (padding marked with ``IGNORE_INDEX``, true sizes in ``sizes``).
    The predictor sees each group of equal-size images of a batch without padding
    (:func:`unpadded_groups`), so an image's score does not depend on the batch size.
    """
    conf = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    for batch in batches:
        for group in unpadded_groups(batch):
            images = group["image"].to(device, non_blocking=True).float().div_(255)
            masks = group["mask"].to(device, non_blocking=True)
            pred = predictor(images).argmax(1)
            conf += confusion_matrix(pred, masks, num_classes)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(conf)
    return metrics_from_confusion(conf), conf.cpu()
