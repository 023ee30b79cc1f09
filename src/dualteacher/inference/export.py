"""``dualteacher export``: a checkpoint's network as a self-contained ONNX model.

The ONNX model takes ``image``: float32 RGB in [0, 1], NCHW, any batch size and any height and
width; it normalises, pads to the network's stride and crops back inside the graph, and returns
``logits``: float32 ``[N, C, H, W]`` at the input resolution (``argmax`` over axis 1 gives the
class). A ``<model>.json`` written next to it lists the classes, palette and conventions, and
the run's evaluation protocol (``protocol``: mode, tile, stride, flip, scales, resize): the
graph is one whole-image pass, so windows and test-time augmentation are the caller's to apply.

It is exported with PyTorch's TorchScript-based exporter (``dynamo=False``), opset 17, which
needs no extra package; the stride padding is computed from the input's shape with graph
operations, so sizes other than the example size are exact (checked by :func:`check_onnx`).
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dualteacher import __version__
from dualteacher.extras import require
from dualteacher.inference.model import LoadedModel
from dualteacher.models.contract import SegmentationNetwork

OPSET = 17
CHECK_PURPOSE = "checking an ONNX export against PyTorch"


class ExportWrapper(nn.Module):
    """Images in [0, 1] to logits: normalisation and stride padding as graph operations."""

    def __init__(self, network: SegmentationNetwork, mean: tuple[float, ...], std: tuple[float, ...], stride: int) -> None:
        super().__init__()
        self.network = network
        self.stride = stride
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        height, width = images.shape[-2], images.shape[-1]
        x = (images - self.mean) / self.std
        # Always pad (possibly by 0): a traced Python branch would freeze the example's choice.
        x = F.pad(x, (0, (self.stride - width % self.stride) % self.stride, 0, (self.stride - height % self.stride) % self.stride))
        return self.network(x)[..., :height, :width]


def model_card(model: LoadedModel) -> dict[str, Any]:
    """What a user of the ONNX file needs to know, as written to ``<model>.json``, with the software
    and hardware the network was trained in (``environments``, :mod:`dualteacher.environment`)."""
    protocol = dataclasses.asdict(model.prediction_settings())
    del protocol["window_batch"]  # how many windows PyTorch runs at once: not part of the protocol
    return {
        "format": "dualteacher-onnx",
        "dualteacher_version": __version__,
        "opset": OPSET,
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
        "protocol": protocol,
        "environments": model.state.get("environments", []),
    }


def export_onnx(model: LoadedModel, path: str | Path, example_size: tuple[int, int] | None = None) -> Path:
    """Write ``path`` (ONNX) and ``path.with_suffix('.json')``; returns the JSON path.

    ``example_size`` (default: the training crop size) is the (H, W) traced; the graph itself
    accepts any batch and size.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportWrapper(model.network, model.mean, model.std, model.stride).to("cpu").eval()
    height, width = example_size or (model.tile, model.tile)
    example = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    dims = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        # The exporter's notice that it is the legacy one, and SegModel's own (never taken) padding branch.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": dims, "logits": dims},
        )
    model.network.to(model.device)
    card = path.with_suffix(".json")
    card.write_text(json.dumps(model_card(model), indent=1))
    return card


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
