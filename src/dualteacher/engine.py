"""The training loop shared by every method: schedule, evaluation, logging, checkpoints, resume.

:meth:`Trainer.fit` is the loop; its parts each do one job: :meth:`Trainer.train_step` (one
method step, :class:`~dualteacher.optim.Optimization`'s backward and optimiser step, the teachers'
update), :class:`~dualteacher.evaluator.Evaluator` (val mIoU and the best network),
:meth:`Trainer.save_training_state` / ``_restore`` (everything a checkpoint carries) and
:class:`TrainWindow` (the logged means between two log lines).

Randomness is a pure function of (seed, iteration, rank): the weak augmentation of every sample
is seeded from its position in the sampler stream, and the device-side randomness (strong
augmentation, mixing, drop-path) is re-seeded at every iteration. A run resumed from a
checkpoint therefore continues exactly as the uninterrupted run would have.

Precision: on CUDA the method step (student and teacher forwards, losses) runs under autocast,
bf16 by default (``train.amp``); fp16 enables the GradScaler (otherwise a pass-through), whose
state is checkpointed. The CPU path is always float32.
"""

from __future__ import annotations

import enum
import functools
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from tqdm import tqdm

from . import distributed
from .checkpoint import (
    load_latest,
    load_module,
    load_optimizer,
    module_tensors,
    optimizer_tensors,
    save_rotating,
)
from .config import Config, save_config
from .data.build import SplitData, open_splits, stream_loader
from .data.check import needs_unlabeled, preflight
from .data.core import DataError
from .evaluator import Evaluator
from .methods import Batch, Method, MethodContext, build_method
from .models import SegmentationNetwork, model_from_config, model_normalization
from .optim import Optimization, build_optimizer, lr_factor, resolve_amp, set_lr
from .resume import compare, continued_anchor, data_fingerprint, decide
from .runlog import RunLog, append_record, rewind_log


class StopSignals:
    """Turns SIGTERM/SIGINT into a flag checked between iterations (restored on exit)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.name: str | None = None
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.name = signal.Signals(signum).name

    def __enter__(self) -> "StopSignals":
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
    """What one :meth:`Trainer.fit` holds open: the log, the batches from here on, the current log
    window and the progress bar."""

    log: RunLog
    batches: Iterator[tuple[Batch, Batch | None]]
    window: TrainWindow
    bar: tqdm

    def close(self) -> None:
        self.bar.close()
        self.log.close()


class Stream(enum.IntEnum):
    """The independent random streams of a run, each seeded by :func:`derive_seed` from the run's
    seed and this number (the values are part of every seed's run: never renumber them)."""

    LABELED = 1    # the labelled sampler: order and per-sample weak-augmentation seeds
    UNLABELED = 2  # the unlabelled sampler, likewise
    GLOBAL = 3     # torch's global RNG per (iteration, rank): dropout, drop-path
    METHOD = 4     # the generator handed to ``method.step`` per (iteration, rank): strong augmentation, mixing


def derive_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (stable across platforms and Python versions)."""
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present (the local rank's GPU under torchrun), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", distributed.gpu_index())
    return torch.device(name)


class Trainer:
    """Runs one experiment described by a :class:`Config` in ``cfg.run_dir``.

    With ``resume``, a checkpoint in ``run_dir`` is continued; settings that differ from the
    checkpoint's raise :class:`~dualteacher.resume.ResumeError` before anything is written, unless
    every difference is safe and ``allow_changes`` (see :mod:`dualteacher.resume`).
    """

    def __init__(self, cfg: Config, *, resume: bool = True, allow_changes: bool = False, progress: bool = True) -> None:
        self.cfg = cfg
        self.allow_changes = allow_changes
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
        self.method: Method = self._build_method()
        self.amp_dtype = resolve_amp(cfg.train.amp, self.device)
        optimizer = build_optimizer(self.method.optimizer_groups(cfg.optim), cfg.optim)
        self.optimization = Optimization(optimizer, self.method.trained, self.device, self.amp_dtype, cfg.optim, cfg.train)
        self._schedule()
        # what the loop has done: with the evaluator's best and the optimiser, the checkpointed state
        self.iteration = 0
        self.history: list[dict[str, Any]] = []
        self.skipped_steps = 0
        self.train_seconds = 0.0
        self.lr_anchor: tuple[int, float] | None = None
        self.resumed_from: Path | None = None
        self.evaluator = Evaluator(cfg, self.data, self.method, (self.mean, self.std), self.device, self._model_card,
                                   rank=self.rank, world=self.world)
        if resume:
            self._maybe_resume()

    # ----------------------------------------------------------------- set-up
    def _open_data(self) -> SplitData:
        """The run's splits, after the up-front check (errors stop here; rank 0 prints warnings)."""
        report = preflight(self.cfg)
        if report.errors:
            raise DataError(report.format(severities=("error", "warning"))
                            + "\nrun `dualteacher check-data ... --full` to also decode every image")
        if self.rank == 0:
            tqdm.write(report.format(severities=("warning",)))
        return open_splits(self.cfg.data, need_unlabeled=needs_unlabeled(self.cfg))

    def _build_method(self) -> Method:
        """The configured method on the device, its networks' forwards wrapped for DDP."""

        def build(drop_path: float) -> SegmentationNetwork:
            return model_from_config(self.cfg.model, self.num_classes, drop_path=drop_path)

        ctx = MethodContext(cfg=self.cfg.method, build=build, num_classes=self.num_classes, mean=self.mean, std=self.std)
        method = build_method(ctx).to(self.device)
        self.channels_last = self.cfg.train.channels_last
        if self.channels_last:
            for module in method.modules().values():
                module.to(memory_format=torch.channels_last)
        method.wrap(functools.partial(distributed.wrap, device=self.device))
        return method

    def _schedule(self) -> None:
        """Batch sizes and the run's length: an epoch is one pass over the labelled split (or the
        unlabelled one, ``train.epoch_over``) by all ranks together, unless set explicitly."""
        t = self.cfg.train
        self.batch_l = t.batch_size
        self.batch_u = t.unlabeled_batch_size or t.batch_size
        over_unlabeled = t.epoch_over == "unlabeled"
        pool, batch = (self.data.unlabeled, self.batch_u) if over_unlabeled else (self.data.labeled, self.batch_l)
        self.iters_per_epoch = t.iters_per_epoch or max(1, len(pool) // (batch * self.world))
        self.total_iters = t.epochs * self.iters_per_epoch

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

    @functools.cached_property
    def data_fingerprint(self) -> dict[str, Any]:
        """What tells this run's data from other data at another path (:func:`~dualteacher.resume.data_fingerprint`)."""
        return data_fingerprint({"labeled": self.data.labeled, "unlabeled": self.data.unlabeled, "val": self.data.val})

    # ----------------------------------------------------------------- checkpoint and resume state
    def save_training_state(self) -> Path:
        """Write everything the run depends on as the newest training checkpoint (rank 0)."""
        tensors: dict[str, Tensor] = {}
        for role, module in self.method.modules().items():
            tensors.update(module_tensors(f"model/{role}", module))
        optim_tensors, optim_meta = optimizer_tensors(self.optimizer)
        tensors.update(optim_tensors)
        state = {
            "kind": "train",
            "iteration": self.iteration,
            "method": self.method.state_dict(),
            "optimizer": optim_meta,
            "best": self.evaluator.best,
            "history": self.history,
            "skipped_steps": self.skipped_steps,
            "train_seconds": self.train_seconds,
            "scaler": self.scaler.state_dict(),
            "schedule": {"iters_per_epoch": self.iters_per_epoch, "total_iters": self.total_iters,
                         "anchor": None if self.lr_anchor is None else list(self.lr_anchor)},
            "data": self.data_fingerprint,
            **self._model_card(),
        }
        return save_rotating(self.run_dir, tensors, state, self.cfg.train.keep_checkpoints)

    def _restore(self, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
        """The inverse of :meth:`save_training_state` (the schedule continues from its anchor)."""
        for role, module in self.method.modules().items():
            load_module(module, tensors, f"model/{role}")
        load_optimizer(self.optimizer, tensors, state["optimizer"])
        self.method.load_state_dict(state["method"])
        self.iteration = state["iteration"]
        self.evaluator.best = state["best"]
        self.history = state["history"]
        self.skipped_steps = state["skipped_steps"]
        self.train_seconds = state.get("train_seconds", 0.0)  # older checkpoints did not time
        if state.get("scaler"):  # empty when written by a disabled scaler
            self.scaler.load_state_dict(state["scaler"])
        self.lr_anchor = continued_anchor(state, self.cfg.optim, self.iters_per_epoch, self.total_iters)

    def _model_card(self) -> dict[str, Any]:
        """What inference needs to rebuild and use a network from a checkpoint alone."""
        return {
            "config": self.cfg.to_dict(),
            "classes": self.data.classes,
            "num_classes": self.num_classes,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def _maybe_resume(self) -> None:
        """Continue from the newest valid checkpoint in ``run_dir`` if its settings allow it."""
        found = load_latest(self.run_dir, self.cfg.train.keep_checkpoints, tqdm.write)
        if found is None:
            return
        path, tensors, state = found
        changes = compare(state, self.cfg, self.data.classes, self.iters_per_epoch, lambda: self.data_fingerprint)
        decide(changes, allow=self.allow_changes, where=f"{path} (iteration {state['iteration']})")
        self._restore(tensors, state)
        self.resumed_from = path
        if self.rank == 0:
            rewind_log(self.run_dir, self.iteration)  # drop records the checkpoint does not cover
            message = f"resuming {self.run_dir} from {path.name} at iteration {self.iteration}"
            if changes:
                append_record(self.run_dir, {"type": "resume", "iteration": self.iteration,
                                             "changes": {c.key: [c.old, c.new] for c in changes}})
                message += " with changes:" + "".join(f"\n  {c}" for c in changes)
            tqdm.write(message)

    # ----------------------------------------------------------------- evaluation
    def _evaluation_due(self) -> bool:
        """Whether this iteration ends an epoch that ``train.eval_every`` (or the run's end) evaluates."""
        if self.iteration % self.iters_per_epoch:
            return False
        epochs = self.iteration // self.iters_per_epoch
        return epochs % self.cfg.train.eval_every == 0 or self.iteration == self.total_iters

    def _epoch_evaluation(self, log: RunLog) -> dict[str, Any]:
        """Evaluate at an epoch end, record it in the history and the log, print a summary."""
        with self._stop_on_data_error(log):
            record = self.evaluator(self.iteration, self.iteration / self.iters_per_epoch, log)
        record["epoch"] = self.iteration // self.iters_per_epoch
        record["train_seconds"] = self.train_seconds
        self.history.append(record)
        log.write(record)
        if self.rank == 0:
            tqdm.write(_summary(record))
        return record

    @contextmanager
    def _stop_on_data_error(self, log: RunLog) -> Iterator[None]:
        """A :class:`DataError` inside (a file gone bad since the up-front check, or an image whose
        pixels only loading decodes) stops the run with a training checkpoint and a message that
        names the file, without the loader's traceback; the same command continues the run."""
        try:
            yield
        except DataError as error:
            log.close()
            where = f"the run stopped at iteration {self.iteration}"
            if self.rank == 0:
                path = self.save_training_state()
                where += (f" and wrote the checkpoint {path}; fix the file (or drop its id from the split list), "
                          "then run the same command to continue")
            raise DataError(f"{_worker_message(error)}\n{where}") from None

    # ----------------------------------------------------------------- the step
    def loaders(self) -> tuple[Iterator[dict[str, Tensor]], Iterator[dict[str, Tensor]] | None]:
        """The labelled and (if the method reads it) unlabelled sample streams, from this iteration on."""
        workers = self.cfg.data.workers
        pin = self.device.type == "cuda"
        seed = self.cfg.train.seed
        lab = stream_loader(
            self.data.labeled, self.batch_l, derive_seed(seed, Stream.LABELED), workers=workers,
            start=self.iteration * self.batch_l, rank=self.rank, world_size=self.world, pin_memory=pin,
        )
        unl = None
        if self.method.uses_unlabeled:
            assert self.data.unlabeled is not None
            unl = stream_loader(
                self.data.unlabeled, self.batch_u, derive_seed(seed, Stream.UNLABELED), workers=workers,
                start=self.iteration * self.batch_u, rank=self.rank, world_size=self.world, pin_memory=pin,
            )
        return lab, unl

    def batches(self) -> Iterator[tuple[Batch, Batch | None]]:
        """(labelled, unlabelled or None) batches on the device, from this iteration on."""
        # the loaders start now, not at the first batch: starting one draws from torch's global RNG
        lab, unl = self.loaders()
        return ((self._to_batch(raw), self._to_batch(next(unl)) if unl is not None else None) for raw in lab)

    def _to_batch(self, raw: dict[str, Tensor]) -> Batch:
        image = raw["image"].to(self.device, non_blocking=True).float().div_(255)
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        mask = raw["mask"].to(self.device, non_blocking=True) if "mask" in raw else None
        valid = raw["valid"].to(self.device, non_blocking=True) if "valid" in raw else None
        return Batch(image=image, mask=mask, valid=valid)

    def _seed_iteration(self) -> torch.Generator:
        """Re-seed the device-side randomness from (seed, iteration, rank), so that a resumed run
        draws what the uninterrupted one would; returns the generator ``method.step`` draws from."""
        seed = self.cfg.train.seed
        torch.manual_seed(derive_seed(seed, self.iteration, self.rank, Stream.GLOBAL))
        return torch.Generator(self.device).manual_seed(derive_seed(seed, self.iteration, self.rank, Stream.METHOD))

    def train_step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor], bool]:
        """One training step on one batch pair: the method's forward and losses under autocast,
        backward and optimiser step (skipped on non-finite gradients), then the teachers' update.
        Returns the loss, its named parts and whether the step was taken."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss, parts = self.method.step(labeled, unlabeled, gen)
        stepped = self.optimization.step(loss, parts, self.iteration)
        if stepped:
            self.method.after_optimizer_step()  # EMA teachers follow the weights just stepped
        else:
            self.skipped_steps += 1
        return loss, parts, stepped

    # ----------------------------------------------------------------- the loop
    def fit(self, stop_at: int | None = None) -> dict[str, Any]:
        """Train to the configured length (continuing a resumed run); return the last eval record.

        ``stop_at`` ends the run early after that iteration, with a checkpoint, as an
        interruption would. SIGTERM or SIGINT (what schedulers send before pre-emption) end the
        run after the current iteration with a checkpoint; the record then names the signal
        under ``"interrupted"``.
        """
        end = self.total_iters if stop_at is None else min(stop_at, self.total_iters)
        session = self._open_session()
        record = self._catch_up(session.log)
        first = self.iteration
        with StopSignals() as stop:
            while self.iteration < end:
                step_start = time.perf_counter()
                # epoch start: a method may switch teachers here (the epoch is derived, so resume agrees)
                epoch = self.iteration // self.iters_per_epoch
                if self.iteration == first or self.iteration % self.iters_per_epoch == 0:
                    self.method.start_epoch(epoch)
                # learning rate and this iteration's randomness
                lr = set_lr(self.optimizer, lr_factor(self.iteration, self.total_iters, self.cfg.optim, self.lr_anchor))
                gen = self._seed_iteration()
                # data, forward, backward, step
                with self._stop_on_data_error(session.log):
                    labeled, unlabeled = next(session.batches)
                loss, parts, stepped = self.train_step(labeled, unlabeled, gen)
                self.iteration += 1
                # log the window's means every train.log_every iterations
                self._log_step(session, loss, parts, stepped, lr, epoch)
                self.train_seconds += time.perf_counter() - step_start
                # evaluate at the epoch ends train.eval_every asks for
                if self._evaluation_due():
                    record = self._epoch_evaluation(session.log)
                # checkpoint at its cadence or on a signal; stop on a signal
                interrupted = stop.received(self.world > 1)
                if self.rank == 0 and (interrupted or self._checkpoint_due(end)):
                    self.save_training_state()
                if interrupted:
                    record = self._interrupted(record, interrupted)
                    break
        session.close()
        distributed.barrier()
        return record

    def _open_session(self) -> _Session:
        """The log (and the run's config.yaml), the batches from here on, the first log window, the bar."""
        log = RunLog(self.run_dir, enabled=self.rank == 0)
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / "config.yaml")
        batches = self.batches()
        self.optimization.bad_in_a_row = 0  # each fit() counts bad steps afresh, as a resumed run does
        self.method.train()
        images_per_iter = (self.batch_l + (self.batch_u if self.method.uses_unlabeled else 0)) * self.world
        bar = tqdm(total=self.total_iters, initial=self.iteration, disable=not self.progress or self.rank != 0,
                   dynamic_ncols=True, desc=self.cfg.method.name)
        return _Session(log, batches, TrainWindow(images_per_iter), bar)

    def _catch_up(self, log: RunLog) -> dict[str, Any]:
        """The latest evaluation record ({} before the first); first, when a data error stopped the
        run where it was to evaluate, that evaluation and a checkpoint."""
        last = self.history[-1] if self.history else {}
        if self.iteration == 0 or not self._evaluation_due() or last.get("iteration") == self.iteration:
            return last
        record = self._epoch_evaluation(log)
        if self.rank == 0:
            self.save_training_state()
        return record

    def _log_step(self, session: _Session, loss: Tensor, parts: dict[str, Tensor], stepped: bool, lr: float, epoch: int) -> None:
        """Add the step to the log window, write the window every ``train.log_every`` iterations
        and at the run's end, advance the bar."""
        session.window.add(loss, parts, stepped)
        if self.iteration % self.cfg.train.log_every == 0 or self.iteration == self.total_iters:
            self._log_window(session, lr, epoch)
        session.bar.update(1)

    def _log_window(self, session: _Session, lr: float, epoch: int) -> None:
        """Write the window's mean losses, LR, throughput and skips; a non-finite mean loss stops the run."""
        means, images_per_s = session.window.close()
        if "loss" in means and not math.isfinite(means["loss"]):
            raise FloatingPointError(
                f"non-finite training loss at iteration {self.iteration}: " + ", ".join(f"{k}={v}" for k, v in means.items())
            )
        train = {**means, "lr": lr, "images_per_s": images_per_s, "skipped_steps": self.skipped_steps}
        session.log.write({"type": "train", "iteration": self.iteration, "epoch": epoch, **train})
        session.bar.set_postfix(loss=f"{train.get('loss', float('nan')):.3f}", lr=f"{lr:.2e}", ips=f"{train['images_per_s']:.0f}")

    def _checkpoint_due(self, end: int) -> bool:
        """At the run's (or ``stop_at``'s) end; at epoch ends and every ``checkpoint_every``
        iterations, but not while steps are being skipped (keep the last good state)."""
        every = self.cfg.train.checkpoint_every
        periodic = self.iteration % self.iters_per_epoch == 0 or bool(every and self.iteration % every == 0)
        return self.iteration == end or (periodic and self.optimization.bad_in_a_row == 0)

    def _interrupted(self, record: dict[str, Any], signal_name: str) -> dict[str, Any]:
        """``record`` marked as stopped by ``signal_name``, after telling how to continue."""
        tqdm.write(f"stopped by {signal_name} after iteration {self.iteration}; checkpoint written "
                   f"to {self.run_dir}: run the same command to continue")
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

    Raises :class:`~dualteacher.resume.ResumeError` when ``run_dir`` holds a checkpoint written
    with other settings that are not all safe and allowed (``allow_changes``).
    """
    trainer = Trainer(cfg, resume=resume, allow_changes=allow_changes, progress=progress)
    try:
        return trainer.fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
