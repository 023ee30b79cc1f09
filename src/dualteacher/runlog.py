"""Run records: metrics as JSON lines, passed on to the run's experiment trackers (TensorBoard,
CSV, MLflow, W&B: :mod:`dualteacher.training.trackers`) on rank 0; pictures as PNG files under
``pictures/``, passed on too."""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from dualteacher.training.trackers import Tracker


class RunLog:
    """Append records to ``metrics.jsonl`` and give their scalar fields to ``trackers``; a disabled
    log (ranks other than 0) writes nothing."""

    def __init__(self, run_dir: Path, trackers: Sequence[Tracker] = (), *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.trackers = list(trackers) if enabled else []
        self.run_dir = Path(run_dir)
        self.pictures = self.run_dir / "pictures"
        if enabled:
            self.run_dir.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record; its numeric fields go to every tracker at its iteration, named
        ``<type>/<field>`` unless the field's name has a ``/`` (``train/loss``, ``student/miou``)."""
        if not self.enabled:
            return
        append_record(self.run_dir, record)
        kind = record.get("type", "train")
        scalars = {
            key if "/" in key else f"{kind}/{key}": float(value)
            for key, value in record.items()
            if key not in ("type", "iteration") and isinstance(value, numbers.Real)
        }
        for tracker in self.trackers:
            tracker.log_metrics(int(record.get("iteration", 0)), scalars)

    def add_image(self, tag: str, image: np.ndarray, step: int) -> Path | None:
        """Save an ``[H, W, 3]`` uint8 picture as ``pictures/<tag>_<step>.png`` and give it to every tracker."""
        if not self.enabled:
            return None
        self.pictures.mkdir(exist_ok=True)
        path = self.pictures / f"{tag}_{step:06d}.png"
        Image.fromarray(image).save(path)
        for tracker in self.trackers:
            tracker.log_image(tag, image, step)
        return path

    def close(self, status: str = "finished", artifacts: Iterable[Path] = ()) -> None:
        """Give each tracker the ``artifacts`` that exist, then finish it with ``status``
        (``"finished"`` or ``"failed"``). Closing again does nothing."""
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            for path in artifacts:
                if Path(path).is_file():
                    tracker.log_artifact(Path(path))
            tracker.finish(status)


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
