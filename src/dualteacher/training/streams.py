"""Where a run's randomness comes from, and its training batches on the device.

Randomness is a pure function of (seed, iteration, rank): the weak augmentation of every sample
is seeded from its position in the sampler stream, and the device-side randomness (strong
augmentation, mixing, drop-path) is re-seeded at every iteration (:func:`seed_iteration`). A run
resumed from a checkpoint therefore continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from dualteacher.config import Config
from dualteacher.data.build import SplitData, stream_loader
from dualteacher.methods import Batch
from dualteacher.training.state import Schedule


class Stream(enum.IntEnum):
    """The independent random streams of a run, each seeded by :func:`derive_seed` from the run's
    seed and this number (the values are part of every seed's run: never renumber them)."""

    LABELED = 1  # the labelled sampler: order and per-sample weak-augmentation seeds
    UNLABELED = 2  # the unlabelled sampler, likewise
    GLOBAL = 3  # torch's global RNG per (iteration, rank): dropout, drop-path
    METHOD = 4  # the generator handed to ``method.step`` per (iteration, rank): strong augmentation, mixing


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across platforms and Python versions)."""
    return int(
        np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1
    )


def seed_iteration(seed: int, iteration: int, rank: int, device: torch.device) -> torch.Generator:
    """Re-seed torch's global RNG from (seed, iteration, rank), so that a resumed run draws what
    the uninterrupted one would; returns the generator on ``device`` that ``method.step`` draws from."""
    torch.manual_seed(derive_seed(seed, iteration, rank, Stream.GLOBAL))
    return torch.Generator(device).manual_seed(derive_seed(seed, iteration, rank, Stream.METHOD))


class TrainBatches:
    """The labelled and (with ``unlabeled``) unlabelled training batches of this rank, from any
    iteration on: each split's sampler stream (:class:`~dualteacher.data.sampler.ShuffledStreamSampler`,
    seeded by its :class:`Stream`) batched by the ``schedule``'s sizes and moved to ``device``."""

    def __init__(
        self,
        cfg: Config,
        data: SplitData,
        schedule: Schedule,
        device: torch.device,
        *,
        unlabeled: bool,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.cfg, self.data, self.schedule, self.device = cfg, data, schedule, device
        self.unlabeled, self.rank, self.world = unlabeled, rank, world

    def loaders(self, iteration: int) -> tuple[Iterator[dict[str, Tensor]], Iterator[dict[str, Tensor]] | None]:
        """The labelled and (with ``unlabeled``) unlabelled sample streams from ``iteration`` on:
        uint8 images ``[B, 3, H, W]``, int64 masks ``[B, H, W]`` or bool ``valid`` ``[B, H, W]``."""
        seed, workers, pin = self.cfg.train.seed, self.cfg.data.workers, self.device.type == "cuda"
        size_l, size_u = self.schedule.batch_labeled, self.schedule.batch_unlabeled
        lab = stream_loader(
            self.data.labeled,
            size_l,
            derive_seed(seed, Stream.LABELED),
            workers=workers,
            start=iteration * size_l,
            rank=self.rank,
            world_size=self.world,
            pin_memory=pin,
        )
        unl = None
        if self.unlabeled:
            assert self.data.unlabeled is not None
            unl = stream_loader(
                self.data.unlabeled,
                size_u,
                derive_seed(seed, Stream.UNLABELED),
                workers=workers,
                start=iteration * size_u,
                rank=self.rank,
                world_size=self.world,
                pin_memory=pin,
            )
        return lab, unl

    def start(self, iteration: int) -> Iterator[tuple[Batch, Batch | None]]:
        """(labelled, unlabelled or None) batches on the device from ``iteration`` on. The loaders
        start now, not at the first batch: starting one draws from torch's global RNG."""
        lab, unl = self.loaders(iteration)
        return ((self._to_batch(raw), self._to_batch(next(unl)) if unl is not None else None) for raw in lab)

    def _to_batch(self, raw: dict[str, Tensor]) -> Batch:
        """Images as float in [0, 1] (NHWC in memory with ``train.channels_last``), masks as loaded."""
        image = raw["image"].to(self.device, non_blocking=True).float().div_(255)
        if self.cfg.train.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        mask = raw["mask"].to(self.device, non_blocking=True) if "mask" in raw else None
        valid = raw["valid"].to(self.device, non_blocking=True) if "valid" in raw else None
        return Batch(image=image, mask=mask, valid=valid)
