"""``dualteacher export``: a checkpoint's network as a self-contained ONNX model.

The ONNX model takes ``image``: float32 RGB in [0, 1], NCHW, any batch size and any height and
width; it normalises, pads to the network's stride and crops back inside the graph, and returns
``logits``: float32 ``[N, C, H, W]`` at the input resolution (``argmax`` over axis 1 gives the
class). A ``<model>.json`` written next to it lists the classes, palette, conventions, the
exporter and opset, and the run's evaluation protocol (``protocol``: mode, tile, stride, flip,
scales, resize): the graph is one whole-image pass, so windows and test-time augmentation are
the caller's to apply.

It is exported with PyTorch's current exporter (``torch.onnx.export(..., dynamo=True)``, opset
18, needs ``onnxscript``). Should that exporter fail (a network it cannot capture, onnxscript
missing), the TorchScript-based exporter (``dynamo=False``, opset 17) writes the file instead
and :class:`OnnxExport` says why. Either way the stride padding is computed from the input's
shape with graph operations, so sizes other than the example size are exact (checked by
:func:`check_onnx`). For the dynamo exporter, timm's run-time "same" padding is replaced by the
equivalent fixed padding (:func:`with_static_same_padding`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import Conv2dSame
from torch import Tensor, nn

from dualteacher import __version__
from dualteacher.extras import require
from dualteacher.inference.model import LoadedModel
from dualteacher.models.contract import SegmentationNetwork

if TYPE_CHECKING:
    from dualteacher.models.contract import SegmentationModule

DYNAMO, TORCHSCRIPT = "dynamo", "torchscript"
OPSETS = {DYNAMO: 18, TORCHSCRIPT: 17}
"""The opset each exporter writes (18: the dynamo exporter's own; 17: the TorchScript exporter's)."""
DYNAMIC_DIMS = {0: "batch", 2: "height", 3: "width"}
"""Named dynamic axes of the ``image`` input and of the ``logits`` output."""
CHECK_PURPOSE = "checking an ONNX export against PyTorch"
DYNAMO_PURPOSE = "writing ONNX with the dynamo exporter"


@dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote and how.

    ``exporter`` is ``"dynamo"`` or ``"torchscript"``; ``fallback_reason`` is one line saying
    why the dynamo exporter was not used (None when it was, or when it was not asked for).
    """

    onnx: Path
    card: Path
    exporter: str
    fallback_reason: str | None = None


class ExportWrapper(nn.Module):
    """Images in [0, 1] to logits: normalisation and stride padding as graph operations."""

    mean: Tensor
    std: Tensor

    def __init__(
        self, network: SegmentationNetwork, mean: tuple[float, ...], std: tuple[float, ...], stride: int
    ) -> None:
        super().__init__()
        self.network = network
        self.stride = stride
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2], images.shape[-1]
        x = (images - self.mean) / self.std
        # Always pad (possibly by 0): a traced Python branch would freeze the example's choice.
        # The padded size is written as stride * ceil(size / stride) so that the dynamo exporter
        # sees a multiple of the stride: its symbolic sizes stay short through the network, where
        # a ``size % stride`` form grows into nested expressions it takes minutes to process.
        padded_h = (height + self.stride - 1) // self.stride * self.stride
        padded_w = (width + self.stride - 1) // self.stride * self.stride
        x = F.pad(x, (0, padded_w - width, 0, padded_h - height))
        return self.network(x)[..., :height, :width]


class StaticSameConv2d(nn.Conv2d):
    """TensorFlow "same" convolution with fixed padding, for inputs whose sides are multiples of
    its stride: then the total padding of a side is ``max((k - 1) * d + 1 - s, 0)``, the smaller
    half before (timm's :class:`~timm.layers.Conv2dSame` computes it from the size at run time)."""

    def __init__(self, conv: Conv2dSame) -> None:
        (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
        super().__init__(
            conv.in_channels, conv.out_channels, (kh, kw), (sh, sw), 0, (dh, dw), conv.groups, conv.bias is not None
        )
        self.load_state_dict(conv.state_dict())
        pads = [max((k - 1) * d + 1 - s, 0) for k, d, s in zip(self.kernel_size, self.dilation, self.stride)]
        self.same_pad = (pads[1] // 2, pads[1] - pads[1] // 2, pads[0] // 2, pads[0] - pads[0] // 2)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, self.same_pad))


def with_static_same_padding(network: SegmentationModule) -> SegmentationModule:
    """A copy of ``network`` whose timm "same" convolutions (the TF-ported encoders, e.g.
    ``tu-tf_efficientnet_lite0``) pad by a fixed amount (:class:`StaticSameConv2d`).

    Exact when every such convolution sees sides that are multiples of its stride, as inside
    :class:`ExportWrapper`, which pads to the network's stride (the product of the encoder's
    strides). The dynamo exporter would otherwise carry the run-time padding formula through
    every layer: exporting a random-init efficientnet-lite0 DeepLabV3+ at 64 px took 600 s
    instead of 45 s (on a busy 2-core CPU).
    """
    static = copy.deepcopy(network)
    for name, module in list(static.named_modules()):
        if isinstance(module, Conv2dSame):
            static.set_submodule(name, StaticSameConv2d(module))
    return static


def model_card(model: LoadedModel, exporter: str = DYNAMO) -> dict[str, Any]:
    """What a user of the ONNX file needs to know, as written to ``<model>.json``, with the software
    and hardware the network was trained in (``environments``, :mod:`dualteacher.environment`);
    ``exporter`` is the one that wrote the file (see :data:`OPSETS`)."""
    return {
        "format": "dualteacher-onnx",
        "dualteacher_version": __version__,
        "exporter": exporter,
        "opset": OPSETS[exporter],
        "role": model.role,
        "classes": model.classes,
        "palette": model.palette[: len(model.classes)].tolist(),
        "input": {
            "name": "image",
            "dtype": "float32",
            "layout": "NCHW",
            "channels": "RGB",
            "range": [0.0, 1.0],
            "dynamic": ["batch", "height", "width"],
        },
        "output": {"name": "logits", "dtype": "float32", "layout": "NCHW", "classes_axis": 1},
        "normalization": {"mean": list(model.mean), "std": list(model.std), "applied_inside_model": True},
        "stride": model.stride,
        "protocol": model.prediction_settings().protocol(),
        "environments": model.state.get("environments", []),
    }


def export_onnx(
    model: LoadedModel, path: str | Path, example_size: tuple[int, int] | None = None, *, dynamo: bool = True
) -> OnnxExport:
    """Write ``path`` (ONNX, weights inside) and ``path.with_suffix('.json')`` (the model card).

    ``example_size`` (default: the run's evaluation tile) is the (H, W) traced, in a batch of
    two; the graph itself accepts any batch and size. ``dynamo`` tries the dynamo exporter
    first and falls back to the TorchScript exporter on any error it raises, returning the
    reason in one line; ``dynamo=False`` uses the TorchScript exporter only. Errors of the
    TorchScript exporter are raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model.network, model.mean, model.std, model.stride).to("cpu").eval()
    height, width = example_size or (model.tile, model.tile)
    # Two images: with one, torch.export specialises some uses of the batch size to 1.
    example = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    exporter, reason = TORCHSCRIPT, None
    try:
        if dynamo:
            try:
                static = ExportWrapper(with_static_same_padding(model.network), model.mean, model.std, model.stride)
                _export_dynamo(static.eval(), example, path)
                exporter = DYNAMO
            except Exception as error:  # any failure of the dynamo exporter means: use the old one
                reason = _first_line(error)
        if exporter == TORCHSCRIPT:
            _export_torchscript(wrapper, example, path)
    finally:
        model.network.to(model.device)
    card = path.with_suffix(".json")
    card.write_text(json.dumps(model_card(model, exporter), indent=1))
    return OnnxExport(onnx=path, card=card, exporter=exporter, fallback_reason=reason)


def _first_line(error: BaseException) -> str:
    """``Type: first line`` of the error that started ``error`` (the exporter wraps the error of
    torch.export in its own), colour codes removed, at most 300 characters."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error)).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else 'no message'}"[:300]


@contextlib.contextmanager
def _exporter_output_silenced() -> Iterator[None]:
    """Nothing of PyTorch's on stderr for the duration, only its loggers' errors: a failed
    capture prints the whole traced graph (torch.export) and logs warnings about it, where
    :func:`export_onnx` reports one line of reason instead."""
    names = [n for n in list(logging.Logger.manager.loggerDict) if n == "torch" or n.startswith("torch.")]
    loggers = [logging.getLogger(n) for n in dict.fromkeys(["torch", *names])]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _export_dynamo(wrapper: ExportWrapper, example: Tensor, path: Path) -> None:
    """``torch.onnx.export(dynamo=True)`` with batch, height and width dynamic; the output's
    axes are named as the input's (the exporter names them by the padding-and-crop formula,
    which equals the input's size). Raises :class:`~dualteacher.extras.MissingExtraError`
    without onnxscript (the ``export`` extra)."""
    require("onnxscript", extra="export", purpose=DYNAMO_PURPOSE)
    import onnx  # a dependency of onnxscript

    with warnings.catch_warnings(), _exporter_output_silenced():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            dynamo=True,
            opset_version=OPSETS[DYNAMO],
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes=(dict(DYNAMIC_DIMS),),
            external_data=False,
            verbose=False,
        )
    graph = onnx.load(str(path))
    dims = graph.graph.output[0].type.tensor_type.shape.dim
    for axis, name in DYNAMIC_DIMS.items():
        dims[axis].dim_param = name
    onnx.save(graph, str(path))


def _export_torchscript(wrapper: ExportWrapper, example: Tensor, path: Path) -> None:
    """The TorchScript-based exporter (``dynamo=False``), dynamic axes by name."""
    with warnings.catch_warnings():
        # The exporter's notice that it is the legacy one, and SegModel's own (never taken) padding branch.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSETS[TORCHSCRIPT],
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": DYNAMIC_DIMS, "logits": DYNAMIC_DIMS},
        )


def check_onnx(model: LoadedModel, path: str | Path, sizes: list[tuple[int, int, int]]) -> dict[str, float]:
    """Run the ONNX file with onnxruntime and PyTorch on random images of each (N, H, W).

    Returns the largest absolute logit difference, the share of pixels whose argmax differs and
    onnxruntime's seconds per image. Needs onnxruntime: raises
    :class:`~dualteacher.extras.MissingExtraError` without the ``export`` extra.
    """
    onnxruntime = require("onnxruntime", extra="export", purpose=CHECK_PURPOSE)

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(0)
    max_diff, flipped, pixels, seconds, images = 0.0, 0, 0, 0.0, 0
    for count, height, width in sizes:
        x = torch.rand(count, 3, height, width, generator=gen)
        expected = model.logits(x).cpu().numpy()
        start = time.perf_counter()
        got = session.run(["logits"], {"image": x.numpy()})[0]
        seconds += time.perf_counter() - start
        images += count
        if got.shape != expected.shape:
            raise RuntimeError(f"ONNX output shape {got.shape} differs from PyTorch's {expected.shape}")
        max_diff = max(max_diff, float(np.abs(got - expected).max()))
        flipped += int((got.argmax(1) != expected.argmax(1)).sum())
        pixels += count * height * width
    return {"max_abs_diff": max_diff, "argmax_mismatch": flipped / pixels, "seconds_per_image": seconds / images}
