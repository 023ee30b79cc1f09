"""Feature perturbation: channel dropout of encoder feature maps (UniMatch's FP stream).

Everything works on whole batches of tensors on any device. All randomness comes from an explicit
``torch.Generator``; random numbers are drawn on the generator's device and moved to the data's
device, and every function draws the same amount of randomness regardless of its probabilities,
so a fixed generator state always gives the same output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


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
