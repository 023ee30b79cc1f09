"""Samplers whose output depends only on (seed, position): shuffled every pass, sharded over
ranks, resumable mid-epoch, and independent of the number of DataLoader workers.

Each training sample is requested as ``(index, aug_seed)``; the dataset seeds its weak
augmentation from ``aug_seed``, so the stream of augmented samples is a pure function of the
run's seed and the sample's position in the stream.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class ShuffledStreamSampler(Sampler[tuple[int, int]]):
    """An endless stream of ``(index, aug_seed)``; a fresh permutation every pass over the data.

    Under data parallelism every rank draws the same global permutation (seeded by the pass
    number), pads it to a multiple of ``world_size`` by wrapping, and takes every
    ``world_size``-th element starting at ``rank``: each pass uses every sample once
    (plus at most ``world_size - 1`` repeats), and ranks never see the same sample in a pass.
    ``start`` is the number of samples this rank has already consumed (for exact resume).
    """

    def __init__(self, size: int, seed: int, *, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        if size < 1:
            raise ValueError("cannot sample from an empty dataset")
        self.size = size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start = start
        self.per_rank = -(-size // world_size)

    def _pass(self, pass_id: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's indices and augmentation seeds for one pass (seeds follow global positions)."""
        rng = np.random.default_rng([self.seed, pass_id])
        total = self.per_rank * self.world_size
        indices = np.resize(rng.permutation(self.size), total)
        seeds = rng.integers(0, 2**63 - 1, size=total)
        return indices[self.rank :: self.world_size], seeds[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pass_id, offset = divmod(self.start, self.per_rank)
        while True:
            indices, seeds = self._pass(pass_id)
            for pos in range(offset, self.per_rank):
                yield int(indices[pos]), int(seeds[pos])
            pass_id += 1
            offset = 0


class ShardSampler(Sampler[int]):
    """Every index exactly once over all ranks (no padding, no repeats): for evaluation."""

    def __init__(self, size: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.indices = list(range(rank, size, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
