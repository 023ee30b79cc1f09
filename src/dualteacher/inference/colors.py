"""Colours for class maps: the palette, colourised masks and overlays (numpy only, no plotting)."""

from __future__ import annotations

import numpy as np


def palette(num_classes: int) -> np.ndarray:
    """``[256, 3]`` uint8 colours: the PASCAL VOC bit-interleaving scheme, 255 (ignore) white.

    Class ``i`` gets row ``i`` whatever ``num_classes`` is, so maps of different models agree.
    """
    colours = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours[i] = (r, g, b)
    colours[255] = (255, 255, 255)
    return colours


def colorize(mask: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """An ``[H, W]`` class map as an ``[H, W, 3]`` uint8 picture."""
    return colours[np.asarray(mask).astype(np.int64) % len(colours)]


def overlay(image: np.ndarray, mask: np.ndarray, colours: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``image`` [H,W,3] uint8 blended with the colourised ``mask``; ``alpha`` = weight of the colours."""
    blend = (1.0 - alpha) * image.astype(np.float32) + alpha * colorize(mask, colours).astype(np.float32)
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)
