"""Evaluation modes: how a network predicts a val image, and scoring a dataset split under a mode.

* ``whole``: the full image at once (the network pads it to its stride and crops back).
* ``center``: image *and label* are cut to their central ``tile x tile`` region (smaller sides
  are kept whole) and that region is predicted whole and scored against the cropped label.
  This is the "center crop" protocol some SSS papers report on VOC; it is not comparable to
  whole-image scores.
* ``slide``: overlapping ``tile x tile`` windows every ``stride`` pixels (default 2/3 of the
  tile), the last window aligned to the image edge; softmax probabilities are averaged where
  windows overlap (:func:`dualteacher.inference.metrics.sliding_window_logits`). ``window_batch``
  windows run per forward pass (speed and memory only; the result is the same up to float
  rounding).

Test-time augmentation on top of any mode: ``flip`` adds the horizontally mirrored image;
``scales`` runs the image rescaled by each factor (bilinear) and ``resize`` = (long, short)
first rescales every image by ``min(long / max(H, W), short / min(H, W))`` (mmseg's keep-ratio
``Resize``, e.g. (2048, 512) for ADE20K). Every view's probabilities are resized back to the
input size and averaged. Scores are always computed at the label's own resolution over the
whole split.

A predictor maps a float batch in [0, 1] ``[B, 3, H, W]`` to ``[B, C, H, W]``: plain logits in
``whole``/``center`` mode without TTA, otherwise the log of the averaged probabilities (same
argmax; softmax gives the probabilities back). It is always called on images of one size:
:func:`dualteacher.inference.metrics.evaluate` splits every val batch into groups of equal-size images
without padding, so windows, resizing and the network see each image as if it were alone,
whatever the val batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dualteacher.config import DataConfig
from dualteacher.data.build import eval_loader
from dualteacher.data.source import DataSource
from dualteacher.data.transforms import EvalTransform
from dualteacher.inference.metrics import WINDOW_BATCH, Metrics, Predictor, evaluate, sliding_window_logits
from dualteacher.registry import EVAL_MODES


@dataclass(frozen=True)
class EvalSettings:
    """One evaluation protocol, and how many sliding windows run per forward pass
    (``window_batch``, which does not change the result); see the module docstring."""

    mode: str = "whole"
    tile: int = 512
    stride: int | None = None
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    resize: tuple[int, int] | None = None
    window_batch: int = WINDOW_BATCH

    def __post_init__(self) -> None:
        EVAL_MODES.get(self.mode)  # ValueError naming the modes
        if self.tile < 1:
            raise ValueError(f"tile must be at least 1, got {self.tile}")
        if self.stride is not None and not 1 <= self.stride <= self.tile:
            raise ValueError(f"stride must be in [1, tile={self.tile}], got {self.stride}")
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError(f"scales must be positive, got {self.scales}")
        if self.resize is not None and min(self.resize) < 1:
            raise ValueError(f"resize needs (long, short) >= 1, got {self.resize}")
        if self.window_batch < 1:
            raise ValueError(f"window_batch must be at least 1, got {self.window_batch}")

    @classmethod
    def from_config(cls, data: DataConfig) -> EvalSettings:
        """The protocol configured in ``data.eval_*`` (tile defaults to ``data.crop_size``)."""
        return cls(
            mode=data.eval_mode,
            tile=data.eval_tile or data.crop_size,
            stride=data.eval_stride,
            flip=data.eval_flip,
            scales=tuple(data.eval_scales),
            resize=tuple(data.eval_resize) if data.eval_resize is not None else None,  # type: ignore[arg-type]
            window_batch=data.eval_window_batch,
        )

    def override(
        self,
        *,
        mode: str | None = None,
        tile: int | None = None,
        stride: int | None = None,
        flip: bool | None = None,
        scales: tuple[float, ...] | None = None,
        resize: tuple[int, int] | None = None,
        window_batch: int | None = None,
    ) -> EvalSettings:
        """These settings with every given (not None, not empty) value replaced.

        A new ``tile`` without a new ``stride`` drops the old stride (the default, 2/3 of the
        new tile). Raises ValueError for a combination that is not valid.
        """
        return EvalSettings(
            mode=mode or self.mode,
            tile=tile or self.tile,
            stride=stride if stride is not None else (self.stride if tile is None else None),
            flip=self.flip if flip is None else flip,
            scales=tuple(scales) if scales else self.scales,
            resize=tuple(resize) if resize else self.resize,  # type: ignore[arg-type]
            window_batch=window_batch or self.window_batch,
        )

    @property
    def kind(self) -> EvalMode:
        """What :attr:`mode` does (:data:`~dualteacher.registry.EVAL_MODES`)."""
        return EVAL_MODES.get(self.mode)

    def for_whole_images(self) -> EvalSettings:
        """The protocol for predicting whole images: a mode that crops image and label (``center``)
        is scored on part of the image only, so it predicts ``whole``; other modes are kept."""
        return self.override(mode="whole") if self.kind.crops else self

    def protocol(self) -> dict[str, Any]:
        """The settings that decide the scores, by field name: every field but ``window_batch``
        (how the windows are run), as written to model cards."""
        settings = asdict(self)
        del settings["window_batch"]
        return settings

    @property
    def is_plain(self) -> bool:
        """True when the predictor is the network alone (no windows, no TTA)."""
        return self.kind.view is None and not self.flip and self.scales == (1.0,) and self.resize is None

    def transform(self) -> EvalTransform:
        """The val transform: a centre crop of ``tile`` for a mode that crops, nothing otherwise."""
        return EvalTransform(center_crop=self.tile if self.kind.crops else None)


View = Callable[[Predictor, Tensor, EvalSettings, int | None], Tensor]
"""How a mode turns (network predictor, images, settings, class count) into logits at input size."""


@dataclass(frozen=True)
class EvalMode:
    """One evaluation mode of :data:`~dualteacher.registry.EVAL_MODES`: ``view`` None runs the
    network on the whole (possibly cropped) image; ``crops`` cuts image and label to their central
    tile first (see the module docstring)."""

    view: View | None = None
    crops: bool = False


def _windows(predict: Predictor, images: Tensor, settings: EvalSettings, num_classes: int | None) -> Tensor:
    return sliding_window_logits(predict, images, settings.tile, settings.stride, num_classes, settings.window_batch)


WHOLE = EvalMode()
CENTER = EvalMode(crops=True)
SLIDE = EvalMode(view=_windows)


def resize_factor(height: int, width: int, resize: tuple[int, int] | None) -> float:
    """mmseg's keep-ratio factor for ``resize`` = (long, short); 1 without ``resize``."""
    if resize is None:
        return 1.0
    long_side, short_side = max(resize), min(resize)
    return min(long_side / max(height, width), short_side / min(height, width))


def build_predictor(predict: Predictor, settings: EvalSettings, num_classes: int | None = None) -> Predictor:
    """Wrap ``predict`` (images in [0, 1] -> logits at input size) into the protocol ``settings``."""
    if settings.is_plain:
        return predict

    def view(images: Tensor) -> Tensor:
        mode_view = settings.kind.view
        return predict(images) if mode_view is None else mode_view(predict, images, settings, num_classes)

    def run(images: Tensor) -> Tensor:
        height, width = images.shape[-2:]
        base = resize_factor(height, width, settings.resize)
        total: Tensor | None = None
        views = 0
        for scale in settings.scales:
            size = (max(1, round(height * base * scale)), max(1, round(width * base * scale)))
            scaled = (
                images
                if size == (height, width)
                else F.interpolate(images, size=size, mode="bilinear", align_corners=False)
            )
            for flipped in (False, True) if settings.flip else (False,):
                probs = view(scaled.flip(-1) if flipped else scaled).float().softmax(1)
                if flipped:
                    probs = probs.flip(-1)
                if size != (height, width):
                    probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
                total = probs if total is None else total + probs
                views += 1
        assert total is not None
        return (total / views).clamp_min(torch.finfo(torch.float32).tiny).log()

    return run


def evaluate_split(
    predict: Predictor,
    source: DataSource,
    split: str,
    settings: EvalSettings,
    device: torch.device,
    *,
    batch_size: int = 1,
    workers: int = 0,
) -> tuple[Metrics, Tensor]:
    """Score ``predict`` on ``split`` of ``source`` under ``settings``: (metrics, confusion matrix)."""
    num_classes = len(source.classes)
    dataset = source.dataset(source.split_ids(split), labeled=True, transform=settings.transform())
    loader = eval_loader(dataset, batch_size, workers=workers)
    return evaluate(build_predictor(predict, settings, num_classes), loader, num_classes, device)
