"""Run records: metrics as JSON lines plus the same scalars in TensorBoard (rank 0 only);
pictures as PNG files under ``pictures/`` plus TensorBoard images."""

from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


class RunLog:
    """Append records to ``metrics.jsonl`` and write their scalar fields to TensorBoard."""

    def __init__(self, run_dir: Path, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.writer = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            run_dir.mkdir(parents=True, exist_ok=True)
            self.path = run_dir / "metrics.jsonl"
            self.pictures = run_dir / "pictures"
            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record; numeric fields become TensorBoard scalars at its iteration."""
        if not self.enabled:
            return
        append_record(self.path.parent, record)
        kind = record.get("type", "train")
        step = int(record.get("iteration", 0))
        for key, value in record.items():
            if key in ("type", "iteration") or not isinstance(value, numbers.Real):
                continue
            tag = key if "/" in key else f"{kind}/{key}"
            self.writer.add_scalar(tag, float(value), step)

    def add_image(self, tag: str, image: np.ndarray, step: int) -> Path | None:
        """Save an ``[H, W, 3]`` uint8 picture as ``pictures/<tag>_<step>.png`` and in TensorBoard."""
        if not self.enabled:
            return None
        self.pictures.mkdir(exist_ok=True)
        path = self.pictures / f"{tag}_{step:06d}.png"
        Image.fromarray(image).save(path)
        self.writer.add_image(tag, image, step, dataformats="HWC")
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def append_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Append one JSON record to ``run_dir/metrics.jsonl``."""
    with (Path(run_dir) / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps(record) + "\n")


def read_log(run_dir: Path) -> list[dict[str, Any]]:
    """All records of a run's ``metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def rewind_log(run_dir: Path, iteration: int) -> None:
    """Drop records written after ``iteration`` (a resumed run re-does those iterations)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return
    kept = [r for r in read_log(run_dir) if int(r.get("iteration", 0)) <= iteration]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
