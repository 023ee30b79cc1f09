"""Evaluation during training: every network of a method on the val set, the best one kept.

:mod:`dualteacher.inference.metrics` scores one predictor; the :class:`Evaluator` runs it for the student
and every teacher, keeps the best eligible network as ``best.safetensors``, and adds the
teacher–student coupling diagnostics and a picture of the pseudo-labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor

from dualteacher.checkpoint import module_tensors, save_checkpoint
from dualteacher.config import Config
from dualteacher.data.build import SplitData, eval_loader
from dualteacher.experiments.plots import PICTURE_IMAGES, teacher_picture
from dualteacher.inference.metrics import Metrics, evaluate, logits_predictor
from dualteacher.inference.model import checkpoint_card
from dualteacher.inference.modes import EvalSettings, build_predictor
from dualteacher.methods import Method
from dualteacher.models.contract import Normalization, normalize
from dualteacher.runlog import RunLog
from dualteacher.semi.diagnostics import coupling_metrics
from dualteacher.training import distributed
from dualteacher.training.state import TrainingState

if TYPE_CHECKING:
    from dualteacher.methods.common import PseudoLabelSettings


class Evaluator:
    """Scores a method's networks on ``data.val`` and tracks the best one in ``state.best``
    (checkpointed with the state); each new best is saved with what inference needs besides
    the weights (:func:`~dualteacher.inference.model.checkpoint_card`)."""

    def __init__(
        self,
        cfg: Config,
        data: SplitData,
        method: Method,
        norm: Normalization,
        device: torch.device,
        state: TrainingState,
        *,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.cfg, self.data, self.method, self.device, self.state = cfg, data, method, device, state
        self.mean, self.std = norm
        self.card = checkpoint_card(cfg, data.classes, norm)
        self.rank, self.world = rank, world
        self.probe = self._probe_images()

    @property
    def best_path(self) -> Path:
        return Path(self.cfg.run_dir) / "best.safetensors"

    def _probe_images(self) -> list[Tensor]:
        """A fixed set of unlabelled (or val) images for the coupling diagnostics and the pictures,
        read whole through the data source like every split: float ``[1, 3, H, W]`` in [0, 1] on
        the device. Raises :class:`~dualteacher.data.core.DataError` naming an unreadable file."""
        split = self.data.unlabeled if self.data.unlabeled is not None else self.data.val
        count = min(self.cfg.train.probe_images, len(split))
        step = max(len(split) // max(count, 1), 1)  # spread over the split, not its first files
        probe = self.data.source.dataset([split.ids[i * step] for i in range(count)], labeled=False)
        return [probe[i]["image"][None].to(self.device).float().div(255) for i in range(len(probe))]

    def __call__(self, iteration: int, epoch: float, log: RunLog | None = None) -> dict[str, Any]:
        """Val mIoU of the student and every teacher, plus coupling diagnostics; with ``log``, a
        picture of the pseudo-labels of the teacher on shift. Under DDP it first checks that every
        network is bitwise identical on all ranks (:func:`distributed.verify_replicas`)."""
        distributed.verify_replicas(self.method.modules())
        loader = eval_loader(
            self.data.val,
            self.cfg.data.val_batch_size,
            workers=min(self.cfg.data.workers, 2),
            rank=self.rank,
            world_size=self.world,
        )
        record: dict[str, Any] = {"type": "eval", "iteration": iteration, "epoch": epoch}
        settings = EvalSettings.from_config(self.cfg.data)
        self.method.train(False)
        for role, module in self.method.modules().items():
            predictor = build_predictor(logits_predictor(module, self.mean, self.std), settings, len(self.data.classes))
            metrics, _ = evaluate(predictor, loader, len(self.data.classes), self.device)
            record[f"{role}/miou"] = metrics.miou
            record[f"{role}/pixel_accuracy"] = metrics.pixel_accuracy
            self._track_best(role, metrics, iteration)
            if role == "student":
                record["student/iou"] = metrics.as_dict(self.data.classes)["iou"]
        probe = [normalize(image, self.mean, self.std) for image in self.probe]
        record.update(coupling_metrics(self.method.student, self.method.teachers(), probe))
        if log is not None and log.enabled:
            self._picture(log, iteration)
        self.method.train()
        return record

    def _eligible(self, role: str) -> bool:
        """Whether ``role`` may become best.safetensors under ``train.keep`` (``student``: the
        trained networks only, ``teacher``: the teachers only)."""
        keep = self.cfg.train.keep
        return keep == "best" or (keep == "student") == (role in self.method.trained())

    def _track_best(self, role: str, metrics: Metrics, iteration: int) -> None:
        """A new best eligible network replaces ``state.best`` and (rank 0) ``best.safetensors``."""
        if not self._eligible(role) or metrics.miou <= self.state.best["miou"]:
            return
        self.state.best = {"miou": metrics.miou, "role": role, "iteration": iteration}
        if self.rank == 0:
            state = {
                "kind": "model",
                "role": role,
                "iteration": iteration,
                "metrics": metrics.as_dict(self.data.classes),
                "environments": self.state.environments,
                **self.card,
            }
            save_checkpoint(self.best_path, module_tensors("model", self.method.modules()[role]), state)

    def _picture(self, log: RunLog, iteration: int) -> None:
        """The pseudo-labels of the teacher on shift for the first probe images."""
        teacher = self.method.active_teacher()
        if teacher is None or not self.probe:
            return
        threshold = cast("PseudoLabelSettings", self.cfg.method).threshold  # a method with teachers pseudo-labels
        picture = teacher_picture(
            self.method.student,
            self.method.teachers()[teacher],
            teacher,
            self.probe[:PICTURE_IMAGES],
            self.mean,
            self.std,
            threshold,
            iteration,
        )
        log.add_image("pseudo_labels", picture, iteration)
