"""What a training run has done, and the training checkpoint that carries it.

:class:`Schedule` is the run's batch sizes, length and cadence; :class:`TrainingState` is what
the loop counts (iteration, evaluation records, skipped steps, time, the LR schedule's anchor,
the best network). :class:`TrainingCheckpoints` writes the state, with everything else the run
depends on, as the newest ``last.safetensors`` of ``run_dir``, and resumes a run from the newest
valid one.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from dualteacher.checkpoint import (
    load_latest,
    load_module,
    load_optimizer,
    module_tensors,
    optimizer_tensors,
    save_rotating,
)
from dualteacher.config import Config, TrainConfig
from dualteacher.data.build import SplitData
from dualteacher.environment import continue_environments
from dualteacher.inference.model import checkpoint_card
from dualteacher.methods import Method
from dualteacher.models.contract import Normalization
from dualteacher.runlog import append_record, rewind_log
from dualteacher.training.optim import Optimization
from dualteacher.training.resume import compare, continued_anchor, data_fingerprint, decide

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """Batch sizes (per rank), the run's length in iterations, and when the loop logs, evaluates
    and checkpoints (``train.log_every``, ``eval_every`` in epochs, ``checkpoint_every``)."""

    batch_labeled: int
    batch_unlabeled: int
    iters_per_epoch: int
    total_iters: int
    log_every: int
    eval_every: int
    checkpoint_every: int
    labeled_pass: int
    """Iterations of one pass over the labelled split by all ranks together (at least 1)."""

    @classmethod
    def of(cls, train: TrainConfig, data: SplitData, world: int) -> Schedule:
        """An epoch is ``train.iters_per_epoch`` iterations if set, else one pass over the labelled
        split (or the unlabelled one, ``train.epoch_over``) by all ``world`` ranks together."""
        batch_labeled = train.batch_size
        batch_unlabeled = train.unlabeled_batch_size or train.batch_size
        labeled_pass = max(1, len(data.labeled) // (batch_labeled * world))
        if train.epoch_over == "unlabeled":
            assert data.unlabeled is not None  # opened when epochs run over it (data.check.needs_unlabeled)
            passes = max(1, len(data.unlabeled) // (batch_unlabeled * world))
        else:
            passes = labeled_pass
        iters_per_epoch = train.iters_per_epoch or passes
        return cls(
            batch_labeled,
            batch_unlabeled,
            iters_per_epoch,
            train.epochs * iters_per_epoch,
            train.log_every,
            train.eval_every,
            train.checkpoint_every,
            labeled_pass,
        )

    def epoch(self, iteration: int) -> int:
        """The epoch ``iteration`` lies in (0-based)."""
        return iteration // self.iters_per_epoch

    def ends_epoch(self, iteration: int) -> bool:
        """Whether ``iteration`` iterations make whole epochs."""
        return iteration % self.iters_per_epoch == 0

    def logs(self, iteration: int) -> bool:
        """Whether a log line is due after ``iteration`` iterations (and at the run's end)."""
        return iteration % self.log_every == 0 or iteration == self.total_iters

    def evaluates(self, iteration: int) -> bool:
        """Whether ``iteration`` ends an epoch that ``eval_every`` (or the run's end) evaluates."""
        last = iteration == self.total_iters
        return self.ends_epoch(iteration) and (self.epoch(iteration) % self.eval_every == 0 or last)

    def checkpoints(self, iteration: int, end: int, *, skipping: bool) -> bool:
        """Whether a checkpoint is due after ``iteration`` iterations: at ``end`` (the run's or
        ``stop_at``'s); at epoch ends and every ``checkpoint_every`` iterations, but not while
        steps are ``skipping`` (keep the last good state)."""
        every = self.checkpoint_every
        periodic = self.ends_epoch(iteration) or bool(every and iteration % every == 0)
        return iteration == end or (periodic and not skipping)


@dataclass
class TrainingState:
    """What the loop has done. ``lr_anchor`` is ``(iteration, factor)`` where a lengthened run's
    LR schedule continues from (None: the configured schedule); ``best`` is ``{"miou", "role",
    "iteration"}`` of the best network so far (``{"miou": -1.0}`` before any); ``environments``
    the software and hardware the run trained on, each from the iteration it started at
    (:mod:`dualteacher.environment`; the last is this process's). The evaluator updates ``best``,
    the loop the rest; :meth:`restore` sets the fields in place, so the two keep sharing one object."""

    iteration: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped_steps: int = 0
    train_seconds: float = 0.0
    lr_anchor: tuple[int, float] | None = None
    best: dict[str, Any] = field(default_factory=lambda: {"miou": -1.0})
    environments: list[dict[str, Any]] = field(default_factory=list)

    def header(self) -> dict[str, Any]:
        """Its entries in a training checkpoint's JSON header (the anchor goes with the schedule's)."""
        return {
            "iteration": self.iteration,
            "best": self.best,
            "history": self.history,
            "skipped_steps": self.skipped_steps,
            "train_seconds": self.train_seconds,
            "environments": self.environments,
        }

    def restore(self, header: Mapping[str, Any], lr_anchor: tuple[int, float] | None) -> dict[str, list[Any]]:
        """Take the values of a checkpoint's :meth:`header`, and the anchor the LR continues from;
        this process's environment (the last of ``environments``) is added from the checkpoint's
        iteration on where it differs from the run's last one. Returns those differences
        (``{field: [old, new]}``; empty: the same environment)."""
        self.iteration = header["iteration"]
        self.best = header["best"]
        self.history = header["history"]
        self.skipped_steps = header["skipped_steps"]
        self.train_seconds = header.get("train_seconds", 0.0)  # older checkpoints did not time
        self.lr_anchor = lr_anchor
        stored = list(header.get("environments", []))  # none in checkpoints older than the records
        if not self.environments:  # a state that does not know its process's environment
            self.environments = stored
            return {}
        self.environments, changes = continue_environments(stored, self.environments[-1], self.iteration)
        return changes


class TrainingCheckpoints:
    """The training checkpoints of ``cfg.run_dir``: every network of ``method``, its state
    (teachers, pools), the optimiser and GradScaler of ``optimization``, the :class:`TrainingState`,
    the schedule, a fingerprint of the data and what inference needs (:func:`checkpoint_card`)."""

    def __init__(
        self,
        cfg: Config,
        data: SplitData,
        method: Method,
        optimization: Optimization,
        schedule: Schedule,
        norm: Normalization,
    ) -> None:
        self.cfg, self.data, self.method, self.optimization, self.schedule = cfg, data, method, optimization, schedule
        self.card = checkpoint_card(cfg, data.classes, norm)
        self.run_dir = Path(cfg.run_dir)

    @functools.cached_property
    def data_fingerprint(self) -> dict[str, Any]:
        """What tells this run's data from other data at another path (:func:`~dualteacher.training.resume.data_fingerprint`)."""
        return data_fingerprint({"labeled": self.data.labeled, "unlabeled": self.data.unlabeled, "val": self.data.val})

    def save(self, state: TrainingState) -> Path:
        """Write ``state`` and everything the run depends on as the newest training checkpoint; its path."""
        tensors: dict[str, Tensor] = {}
        for role, module in self.method.modules().items():
            tensors.update(module_tensors(f"model/{role}", module))
        optim_tensors, optim_meta = optimizer_tensors(self.optimization.optimizer)
        tensors.update(optim_tensors)
        header = {
            "kind": "train",
            **state.header(),
            "method": self.method.state_dict(),
            "optimizer": optim_meta,
            "scaler": self.optimization.scaler.state_dict(),
            "schedule": {
                "iters_per_epoch": self.schedule.iters_per_epoch,
                "total_iters": self.schedule.total_iters,
                "anchor": None if state.lr_anchor is None else list(state.lr_anchor),
            },
            "data": self.data_fingerprint,
            **self.card,
        }
        return save_rotating(self.run_dir, tensors, header, self.cfg.train.keep_checkpoints)

    def resume(self, state: TrainingState, *, allow_changes: bool, announce: bool) -> Path | None:
        """Restore ``state`` and the run's parts from the newest valid checkpoint; its path (None:
        there is none, nothing changes). With ``announce`` (rank 0), drop the log records the
        checkpoint does not cover, record the allowed setting changes and log where it resumes.

        Raises :class:`~dualteacher.training.resume.ResumeError`, before anything is written, when the
        checkpoint's settings differ from ``cfg`` other than safely with ``allow_changes``.
        """
        found = load_latest(self.run_dir, self.cfg.train.keep_checkpoints, logger.warning)
        if found is None:
            return None
        path, tensors, header = found
        changes = compare(
            header, self.cfg, self.data.classes, self.schedule.iters_per_epoch, lambda: self.data_fingerprint
        )
        decide(changes, allow=allow_changes, where=f"{path} (iteration {header['iteration']})")
        moved = self._restore(state, tensors, header)
        if announce:
            rewind_log(self.run_dir, state.iteration)
            message = f"resuming {self.run_dir} from {path.name} at iteration {state.iteration}"
            if changes:
                append_record(
                    self.run_dir,
                    {
                        "type": "resume",
                        "iteration": state.iteration,
                        "changes": {c.key: [c.old, c.new] for c in changes},
                    },
                )
                message += " with changes:" + "".join(f"\n  {c}" for c in changes)
            logger.info(message)
            if moved:
                append_record(self.run_dir, {"type": "environment", "iteration": state.iteration, "changes": moved})
                logger.warning(
                    f"warning: {self.run_dir} continues in another environment than it ran in so far "
                    "(both are kept in environment.json and the checkpoints):"
                    + "".join(f"\n  {key}: {old} → {new}" for key, (old, new) in moved.items())
                )
        return path

    def _restore(
        self, state: TrainingState, tensors: dict[str, Tensor], header: Mapping[str, Any]
    ) -> dict[str, list[Any]]:
        """The inverse of :meth:`save`; the LR schedule continues from its anchor (:func:`continued_anchor`).
        Returns how the environment differs from the run's last one (:meth:`TrainingState.restore`)."""
        for role, module in self.method.modules().items():
            load_module(module, tensors, f"model/{role}")
        load_optimizer(self.optimization.optimizer, tensors, header["optimizer"])
        self.method.load_state_dict(header["method"])
        if header.get("scaler"):  # empty when written by a disabled scaler
            self.optimization.scaler.load_state_dict(header["scaler"])
        schedule = self.schedule
        anchor = continued_anchor(header, self.cfg.optim, schedule.iters_per_epoch, schedule.total_iters)
        return state.restore(header, anchor)
