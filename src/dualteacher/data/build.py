"""Turn the ``data`` settings into datasets and DataLoaders for training and evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..config import DataConfig
from .folder import DataError, FolderDataset, collate_eval, read_classes, read_split
from .sampler import ShardSampler, ShuffledStreamSampler
from .transforms import EvalTransform, WeakTransform


@dataclass
class SplitData:
    """The datasets one run reads, and the class names."""

    root: Path
    classes: list[str]
    labeled: FolderDataset
    unlabeled: FolderDataset | None
    val: FolderDataset


def open_splits(cfg: DataConfig, *, need_unlabeled: bool) -> SplitData:
    """Open the labelled, unlabelled and val splits, validating the layout up front."""
    if cfg.dataset != "folder":
        raise DataError(f"data.dataset: unknown dataset {cfg.dataset!r} (available: folder)")
    if not cfg.root:
        raise DataError("data.root is not set: point it at a dataset folder (see README, 'Your own data')")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root {root} is not a directory")
    classes = read_classes(root)
    n = len(classes)
    weak = WeakTransform(cfg.crop_size, tuple(cfg.scale_range), cfg.flip, cfg.ignore_index)
    labeled_ids = read_split(root, cfg.labeled_split)
    val_ids = read_split(root, cfg.val_split)
    overlap = sorted(set(labeled_ids) & set(val_ids))
    if overlap:
        raise DataError(
            f"{len(overlap)} ids are in both splits/{cfg.labeled_split}.txt and splits/{cfg.val_split}.txt "
            f"(e.g. {overlap[0]!r}): validation would score training images"
        )
    unlabeled = None
    if need_unlabeled:
        unlabeled = FolderDataset(root, read_split(root, cfg.unlabeled_split), labeled=False, transform=weak)
    return SplitData(
        root=root,
        classes=classes,
        labeled=FolderDataset(root, labeled_ids, labeled=True, transform=weak, num_classes=n),
        unlabeled=unlabeled,
        val=FolderDataset(root, val_ids, labeled=True, transform=EvalTransform(), num_classes=n),
    )


def stream_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int,
    *,
    workers: int,
    start: int = 0,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> Iterator[dict[str, torch.Tensor]]:
    """An endless iterator of training batches, reshuffled every pass, resumable at ``start`` samples."""
    sampler = ShuffledStreamSampler(len(dataset), seed, rank=rank, world_size=world_size, start=start)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        drop_last=True,
    )
    return iter(loader)


def eval_loader(dataset: Dataset, batch_size: int, *, workers: int, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Every image exactly once across ranks, at original resolution (padded in the batch)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ShardSampler(len(dataset), rank=rank, world_size=world_size),
        num_workers=workers,
        collate_fn=collate_eval,
    )
