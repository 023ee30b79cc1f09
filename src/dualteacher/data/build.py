"""Turn the ``data`` settings into datasets and DataLoaders for training and evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from dualteacher.config import DataConfig
from dualteacher.data.core import DataError, FileListDataset, collate_eval
from dualteacher.data.registry import open_source
from dualteacher.data.sampler import ShardSampler, ShuffledStreamSampler
from dualteacher.data.source import DataSource
from dualteacher.data.transforms import EvalTransform, WeakTransform
from dualteacher.registry import EVAL_MODES


@dataclass
class SplitData:
    """The datasets one run reads, and the class names."""

    root: Path
    classes: list[str]
    labeled: FileListDataset
    unlabeled: FileListDataset | None
    val: FileListDataset
    source: DataSource


def source_from_config(cfg: DataConfig) -> DataSource:
    """The reader of ``data.dataset`` on ``data.root`` (layout checked), splits in ``data.splits_dir``,
    masks read with ``data.ignore_index`` as the unlabelled value."""
    if not cfg.root:
        raise DataError("data.root is not set: point it at a dataset folder (see README, 'Your own data')")
    return open_source(cfg.dataset, cfg.root, cfg.splits_dir, ignore_index=cfg.ignore_index)


def val_transform(cfg: DataConfig) -> EvalTransform:
    """The val transform of ``data.eval_mode``: for a mode that crops (``center``) a centre crop of
    ``eval_tile`` (default ``crop_size``), image and label alike; otherwise none."""
    return EvalTransform(center_crop=(cfg.eval_tile or cfg.crop_size) if EVAL_MODES.get(cfg.eval_mode).crops else None)


def open_splits(cfg: DataConfig, *, need_unlabeled: bool) -> SplitData:
    """Open the labelled, unlabelled and val splits, validating the layout and files up front."""
    source = source_from_config(cfg)
    classes = source.classes
    weak = WeakTransform(cfg.crop_size, cfg.scale_range, cfg.flip)
    labeled_ids = source.split_ids(cfg.labeled_split)
    val_ids = source.split_ids(cfg.val_split)
    overlap = sorted(set(labeled_ids) & set(val_ids))
    if overlap:
        raise DataError(
            f"{len(overlap)} ids are in both the {cfg.labeled_split!r} and the {cfg.val_split!r} split "
            f"(e.g. {overlap[0]!r}): validation would score training images"
        )
    unlabeled = None
    if need_unlabeled:
        unlabeled = source.dataset(source.split_ids(cfg.unlabeled_split), labeled=False, transform=weak)
    return SplitData(
        root=source.root,
        classes=classes,
        labeled=source.dataset(labeled_ids, labeled=True, transform=weak),
        unlabeled=unlabeled,
        val=source.dataset(val_ids, labeled=True, transform=val_transform(cfg)),
        source=source,
    )


def stream_loader(
    dataset: FileListDataset,
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


def eval_loader(
    dataset: FileListDataset, batch_size: int, *, workers: int, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """Every image exactly once across ranks, at original resolution (padded in the batch)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ShardSampler(len(dataset), rank=rank, world_size=world_size),
        num_workers=workers,
        collate_fn=collate_eval,
    )
