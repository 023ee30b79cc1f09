"""The training loop shared by every method: schedule, evaluation, logging, checkpoints, resume.

:meth:`Trainer.fit` is the loop; its parts each do one job: :meth:`Trainer.train_step` (one
method step, :class:`~dualteacher.training.optim.Optimization`'s backward and optimiser step, the teachers'
update), :class:`~dualteacher.training.streams.TrainBatches` (the batches from any iteration on; the run's
random streams are in :mod:`dualteacher.training.streams`), :class:`~dualteacher.training.evaluator.Evaluator` (val
mIoU and the best network), :class:`~dualteacher.training.state.TrainingCheckpoints` (what the loop
has done, :class:`~dualteacher.training.state.TrainingState`, and everything else a checkpoint
carries; resume) and :class:`TrainWindow` (the logged means between two log lines).

Precision: on CUDA the method step (student and teacher forwards, losses) runs under autocast,
bf16 by default (``train.amp``); fp16 enables the GradScaler (otherwise a pass-through), whose
state is checkpointed. The CPU path is always float32.
"""

from __future__ import annotations

import functools
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from dualteacher import environment
from dualteacher.config import Config, save_config
from dualteacher.data.build import SplitData, open_splits
from dualteacher.data.check import needs_unlabeled, preflight
from dualteacher.data.core import DataError
from dualteacher.methods import Batch, Method, MethodContext, build_method
from dualteacher.models.build import model_from_config, model_normalization
from dualteacher.runlog import RunLog
from dualteacher.training import distributed
from dualteacher.training.evaluator import Evaluator
from dualteacher.training.optim import Optimization, build_optimizer, lr_factor, resolve_amp, set_lr
from dualteacher.training.state import Schedule, TrainingCheckpoints, TrainingState
from dualteacher.training.streams import TrainBatches, seed_iteration
from dualteacher.training.trackers import FAILED, FINISHED, check_trackers, open_trackers
from dualteacher.training.warm_start import read_warm_start

if TYPE_CHECKING:
    from dualteacher.models.contract import SegmentationModule

logger = logging.getLogger(__name__)

BAR_SECONDS = 0.1
"""Seconds between progress-bar redraws on a terminal (tqdm's default)."""
PIPED_BAR_SECONDS = 30.0
"""Seconds between redraws when stderr is a pipe or file (``make demo 2>&1 | tee log``): there
every redraw stays in the log, so the bar redraws at most this often (plus once per evaluation,
whose line it writes above the bar)."""


def progress_label(method: str, run_dir: Path) -> str:
    """The progress bar's label: the run directory's name, followed by the method unless the name
    is the method or starts with it (``warmup (supervised)``, ``dual_teacher``,
    ``dual_teacher_seed1``)."""
    name = run_dir.name
    return name if name == method or name.startswith(f"{method}_") else f"{name} ({method})"


def progress_bar(total: int, initial: int, label: str, enabled: bool) -> tqdm:
    """The training loop's bar over ``total`` iterations, starting at ``initial``: redrawn every
    :data:`BAR_SECONDS` on a terminal, every :data:`PIPED_BAR_SECONDS` otherwise."""
    seconds = BAR_SECONDS if sys.stderr.isatty() else PIPED_BAR_SECONDS
    return tqdm(
        total=total,
        initial=initial,
        disable=not enabled,
        dynamic_ncols=True,
        desc=label,
        mininterval=seconds,
        maxinterval=max(seconds, 10.0),
    )


class StopSignals:
    """Turns SIGTERM/SIGINT into a flag checked between iterations (restored on exit)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.name: str | None = None
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.name = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def received(self, distributed_run: bool) -> str | None:
        """The signal's name once one arrived; under DDP, as soon as any rank got one."""
        if not distributed_run:
            return self.name
        flag = torch.tensor([0 if self.name is None else 1], device=distributed.reduce_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return (self.name or "SIGTERM") if int(flag) else None


class TrainWindow:
    """The losses and throughput between two log lines. Mean losses are over the steps taken (a
    skipped step's loss is not finite); images/s is over every iteration."""

    def __init__(self, images_per_iter: int) -> None:
        self.images_per_iter = images_per_iter
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.start, self.iters, self.steps = time.perf_counter(), 0, 0

    def add(self, loss: Tensor, parts: dict[str, Tensor], stepped: bool) -> None:
        self.iters += 1
        if stepped:
            self.steps += 1
            # summed on the device: reading them each iteration would sync it
            for key, value in {"loss": loss.detach(), **parts}.items():
                self.sums[key] = self.sums.get(key, 0) + value

    def close(self) -> tuple[dict[str, float], float]:
        """The window's mean losses and images/s; the next window starts now."""
        images_per_s = self.iters * self.images_per_iter / (time.perf_counter() - self.start)
        means = {k: float(v) / max(self.steps, 1) for k, v in self.sums.items()}
        self._reset()
        return means, images_per_s


@dataclass
class _Session:
    """What one :meth:`Trainer.fit` holds open: the log (and its trackers), the batches from here
    on, the current log window and the progress bar; closing it gives the trackers ``artifacts``."""

    log: RunLog
    batches: Iterator[tuple[Batch, Batch | None]]
    window: TrainWindow
    bar: tqdm
    artifacts: tuple[Path, ...] = ()

    def __enter__(self) -> _Session:
        return self

    def __exit__(self, error: type[BaseException] | None, *exc: object) -> None:
        self.bar.close()
        self.log.close(FINISHED if error is None else FAILED, self.artifacts)

    def write_window(self, iteration: int, epoch: int, lr: float, skipped_steps: int) -> None:
        """Log the window's mean losses, LR, throughput and skips; a non-finite mean loss stops the run."""
        means, images_per_s = self.window.close()
        if "loss" in means and not math.isfinite(means["loss"]):
            raise FloatingPointError(
                f"non-finite training loss at iteration {iteration}: " + ", ".join(f"{k}={v}" for k, v in means.items())
            )
        train = {**means, "lr": lr, "images_per_s": images_per_s, "skipped_steps": skipped_steps}
        self.log.write({"type": "train", "iteration": iteration, "epoch": epoch, **train})
        self.bar.set_postfix(
            loss=f"{train.get('loss', float('nan')):.3f}", lr=f"{lr:.2e}", ips=f"{images_per_s:.0f}", refresh=False
        )  # shown at the bar's next redraw


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present (the local rank's GPU under torchrun), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", distributed.gpu_index())
    return torch.device(name)


class Trainer:
    """Runs one experiment described by a :class:`Config` in ``cfg.run_dir``.

    With ``resume``, a checkpoint in ``run_dir`` is continued (:meth:`resume`); settings that
    differ from the checkpoint's raise :class:`~dualteacher.training.resume.ResumeError` before anything
    is written, unless every difference is safe and ``allow_changes`` (see :mod:`dualteacher.training.resume`).
    """

    def __init__(self, cfg: Config, *, resume: bool = True, allow_changes: bool = False, progress: bool = True) -> None:
        check_trackers(cfg.train.loggers)
        self.cfg = cfg
        self.progress = progress
        self.device = resolve_device(cfg.train.device)
        self.rank, self.world = distributed.setup(self.device)
        self.run_dir = Path(cfg.run_dir)
        torch.manual_seed(cfg.train.seed)  # the networks' initial weights
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not cfg.train.deterministic
        self.data: SplitData = self._open_data()
        self.num_classes = len(self.data.classes)
        self.mean, self.std = model_normalization(cfg.model)
        self.schedule = Schedule.of(cfg.train, self.data, self.world)
        self.method: Method = self._build_method()
        self.amp_dtype = resolve_amp(cfg.train.amp, self.device)
        optimizer = build_optimizer(self.method.optimizer_groups(cfg.optim), cfg.optim)
        self.optimization = Optimization(
            optimizer, self.method.trained, self.device, self.amp_dtype, cfg.optim, cfg.train
        )
        self.batches = TrainBatches(
            cfg,
            self.data,
            self.schedule,
            self.device,
            unlabeled=self.method.uses_unlabeled,
            rank=self.rank,
            world=self.world,
        )
        # what the loop has done: with the networks and the optimiser, what a checkpoint carries
        self.state = TrainingState(environments=[environment.entry(0, self.device, self.world)])
        self.checkpoints = TrainingCheckpoints(
            cfg, self.data, self.method, self.optimization, self.schedule, (self.mean, self.std)
        )
        self.evaluator = Evaluator(
            cfg,
            self.data,
            self.method,
            (self.mean, self.std),
            self.device,
            self.state,
            rank=self.rank,
            world=self.world,
        )
        self.resumed_from: Path | None = None
        if resume:
            self.resume(allow_changes=allow_changes)

    # ----------------------------------------------------------------- set-up
    def _open_data(self) -> SplitData:
        """The run's splits, after the up-front check (errors stop here; rank 0 logs the warnings)."""
        report = preflight(self.cfg)
        if report.errors:
            count = len(report.errors)
            raise DataError(
                f"the data check found {count} error{'' if count == 1 else 's'}, so training did not start:\n"
                + report.format(severities=("error", "warning"))
                + "\nfix the files named above (`dualteacher check-data` with the same settings lists "
                "them with the notes)"
            )
        if self.rank == 0:
            logger.log(logging.WARNING if report.warnings else logging.INFO, report.format(severities=("warning",)))
        return open_splits(self.cfg.data, need_unlabeled=needs_unlabeled(self.cfg))

    def _build_method(self) -> Method:
        """The configured method with its networks on the device (NHWC in memory with
        ``train.channels_last``), their forwards wrapped for DDP; with ``method.init_from`` every
        network starts from that checkpoint's student (:mod:`dualteacher.training.warm_start`)."""

        init_from = self.cfg.method.init_from
        warm = (
            read_warm_start(init_from, self.cfg.model, self.data.classes, (self.mean, self.std)) if init_from else None
        )

        def build(drop_path: float) -> SegmentationModule:
            network = model_from_config(self.cfg.model, self.num_classes, drop_path=drop_path, pretrained=warm is None)
            if warm is not None:
                warm.load_into(network)
            return network

        ctx = MethodContext(
            cfg=self.cfg.method,
            build=build,
            num_classes=self.num_classes,
            mean=self.mean,
            std=self.std,
            labeled_pass=self.schedule.labeled_pass,
        )
        method = build_method(ctx).to(self.device)
        if self.cfg.train.channels_last:
            for module in method.modules().values():
                module.to(memory_format=torch.channels_last)
        method.wrap(functools.partial(distributed.wrap, device=self.device))
        return method

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.optimization.optimizer

    @property
    def scaler(self) -> torch.amp.GradScaler:
        """The fp16 GradScaler (disabled otherwise), whose state the training checkpoint carries."""
        return self.optimization.scaler

    @scaler.setter
    def scaler(self, scaler: torch.amp.GradScaler) -> None:
        self.optimization.scaler = scaler

    def resume(self, *, allow_changes: bool = False) -> Path | None:
        """Continue from the newest valid training checkpoint in ``run_dir``; its path (None: there
        is none). Raises :class:`~dualteacher.training.resume.ResumeError` as the constructor does."""
        path = self.checkpoints.resume(self.state, allow_changes=allow_changes, announce=self.rank == 0)
        if path is not None:
            self.resumed_from = path
        return path

    # ----------------------------------------------------------------- evaluation
    def _epoch_evaluation(self, log: RunLog) -> dict[str, Any]:
        """Evaluate at an epoch end, record it in the history and the log, log a summary line."""
        state = self.state
        with self._stop_on_data_error():
            record = self.evaluator(state.iteration, state.iteration / self.schedule.iters_per_epoch, log)
        record["epoch"] = self.schedule.epoch(state.iteration)
        record["train_seconds"] = state.train_seconds
        state.history.append(record)
        log.write(record)
        if self.rank == 0:
            logger.info(_summary(record))
        return record

    @contextmanager
    def _stop_on_data_error(self) -> Iterator[None]:
        """A :class:`DataError` inside (a file gone bad since the up-front check, or an image whose
        pixels only loading decodes) stops the run with a training checkpoint and a message that
        names the file, without the loader's traceback; the same command continues the run."""
        try:
            yield
        except DataError as error:
            where = f"the run stopped at iteration {self.state.iteration}"
            if self.rank == 0:
                path = self.checkpoints.save(self.state)
                where += (
                    f" and wrote the checkpoint {path}; fix the file (or drop its id from the split list), "
                    "then run the same command to continue"
                )
            raise DataError(f"{_worker_message(error)}\n{where}") from None

    # ----------------------------------------------------------------- the step
    def train_step(
        self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator
    ) -> tuple[Tensor, dict[str, Tensor], bool]:
        """One training step on one batch pair: the method's forward and losses under autocast,
        backward and optimiser step (skipped on non-finite gradients), then the teachers' update.
        Returns the loss, its named parts and whether the step was taken."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss, parts = self.method.step(labeled, unlabeled, gen)
        stepped = self.optimization.step(loss, parts, self.state.iteration)
        if stepped:
            self.method.after_optimizer_step()  # EMA teachers follow the weights just stepped
        else:
            self.state.skipped_steps += 1
        return loss, parts, stepped

    # ----------------------------------------------------------------- the loop
    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to the configured length (continuing a resumed run); return the last eval record.

        ``stop_at`` ends the run early after that iteration, with a checkpoint, as an
        interruption would. SIGTERM or SIGINT (what schedulers send before pre-emption) end the
        run after the current iteration with a checkpoint; the record then names the signal
        under ``"interrupted"``.
        """
        state, schedule = self.state, self.schedule
        end = schedule.total_iters if stop_at is None else min(stop_at, schedule.total_iters)
        with self._open_session() as session, StopSignals() as stop:
            record = self._catch_up(session.log)
            while state.iteration < end:
                step_start = time.perf_counter()
                # a method may switch teachers here (iteration and epoch are derived, so resume agrees)
                epoch = schedule.epoch(state.iteration)
                self.method.begin_step(state.iteration, epoch)
                # learning rate and this iteration's randomness
                lr = set_lr(
                    self.optimizer, lr_factor(state.iteration, schedule.total_iters, self.cfg.optim, state.lr_anchor)
                )
                gen = seed_iteration(self.cfg.train.seed, state.iteration, self.rank, self.device)
                # data, forward, backward, step
                with self._stop_on_data_error():
                    labeled, unlabeled = next(session.batches)
                loss, parts, stepped = self.train_step(labeled, unlabeled, gen)
                state.iteration += 1
                # log the window's means every train.log_every iterations
                session.window.add(loss, parts, stepped)
                if schedule.logs(state.iteration):
                    session.write_window(state.iteration, epoch, lr, state.skipped_steps)
                session.bar.update(1)
                state.train_seconds += time.perf_counter() - step_start
                # evaluate at the epoch ends train.eval_every asks for
                if schedule.evaluates(state.iteration):
                    record = self._epoch_evaluation(session.log)
                # checkpoint at its cadence or on a signal; stop on a signal
                interrupted = stop.received(self.world > 1)
                skipping = self.optimization.bad_in_a_row > 0
                if self.rank == 0 and (interrupted or schedule.checkpoints(state.iteration, end, skipping=skipping)):
                    self.checkpoints.save(state)
                if interrupted:
                    record = self._interrupted(record, interrupted)
                    break
        distributed.barrier()
        return record

    def _open_session(self) -> _Session:
        """The log with its trackers (and the run's config.yaml and environment.json), the batches
        from here on, the first log window, the bar."""
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
            environment.write_environments(self.run_dir, self.state.environments)
        batches = self.batches.start(self.state.iteration)
        self.optimization.bad_in_a_row = 0  # each fit() counts bad steps afresh, as a resumed run does
        self.method.train()
        unlabeled = self.schedule.batch_unlabeled if self.method.uses_unlabeled else 0
        images_per_iter = (self.schedule.batch_labeled + unlabeled) * self.world
        trackers = open_trackers(self.cfg, self.run_dir, self.state.iteration) if self.rank == 0 else []
        log = RunLog(self.run_dir, trackers, enabled=self.rank == 0)
        bar = progress_bar(
            self.schedule.total_iters,
            self.state.iteration,
            progress_label(self.cfg.method.name, self.run_dir),
            self.progress and self.rank == 0,
        )
        return _Session(log, batches, TrainWindow(images_per_iter), bar, artifacts=(self.evaluator.best_path,))

    def _catch_up(self, log: RunLog) -> dict[str, Any]:
        """The latest evaluation record ({} before the first); first, when a data error stopped the
        run where it was to evaluate, that evaluation and a checkpoint."""
        iteration = self.state.iteration
        last = self.state.history[-1] if self.state.history else {}
        if iteration == 0 or not self.schedule.evaluates(iteration) or last.get("iteration") == iteration:
            return last
        record = self._epoch_evaluation(log)
        if self.rank == 0:
            self.checkpoints.save(self.state)
        return record

    def _interrupted(self, record: dict[str, Any], signal_name: str) -> dict[str, Any]:
        """``record`` marked as stopped by ``signal_name``, after telling how to continue."""
        logger.warning(
            f"stopped by {signal_name} after iteration {self.state.iteration}; checkpoint written "
            f"to {self.run_dir}: run the same command to continue"
        )
        return {**record, "interrupted": signal_name}


def _summary(record: dict[str, Any]) -> str:
    """One line per evaluation: the epoch and every network's mIoU."""
    parts = [f"epoch {record['epoch']}"]
    parts += [f"{k.split('/')[0]} mIoU {v:.4f}" for k, v in record.items() if k.endswith("/miou")]
    return " | ".join(parts)


def _worker_message(error: DataError) -> str:
    """The message of a :class:`DataError`, without the DataLoader worker's traceback that
    PyTorch folds into the message of an error re-raised from a worker process."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    return text.rpartition(f"{type(error).__name__}: ")[2].strip()


def train(cfg: Config, *, resume: bool = True, allow_changes: bool = False, progress: bool = True) -> dict[str, Any]:
    """Build a :class:`Trainer` for ``cfg`` and run it; return the final evaluation record.

    Raises :class:`~dualteacher.training.resume.ResumeError` when ``run_dir`` holds a checkpoint written
    with other settings that are not all safe and allowed (``allow_changes``).
    """
    trainer = Trainer(cfg, resume=resume, allow_changes=allow_changes, progress=progress)
    try:
        return trainer.fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
