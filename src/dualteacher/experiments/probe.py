"""Seconds per training iteration, measured: what ``--minutes`` budgets are sized from
(``dualteacher compare --minutes``, ``dualteacher train --data ... --minutes``)."""

from __future__ import annotations

import torch

from dualteacher.config import Config
from dualteacher.training.loop import Trainer

PROBE_WARMUP, PROBE_TIMED = 3, 10
"""Iterations trained before timing (first steps are slow: allocation, autotuning), and timed."""


def iterations_for(minutes: float, s_per_iteration: float) -> int:
    """The iterations that take about ``minutes`` at ``s_per_iteration`` seconds each (at least 1)."""
    return max(1, round(minutes * 60 / s_per_iteration))


def device_name() -> str:
    """The hardware a run trains on, as the table reports it."""
    return f"cuda: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu"


def step_seconds(cfg: Config) -> float:
    """Mean training seconds per iteration of a fresh run of ``cfg`` (evaluation excluded).

    Every ``fit`` call starts the data loaders, and the wait for its first batch counts as
    training time; so after :data:`PROBE_WARMUP` iterations two sessions are timed, of 1 and of
    ``PROBE_TIMED + 1`` iterations, and their difference, which holds exactly ``PROBE_TIMED``
    iterations and no loader start-up, is divided by ``PROBE_TIMED``. Trains in ``cfg.run_dir``
    (which should be a scratch folder: it is left with the probe's checkpoint).
    """
    trainer = Trainer(cfg, resume=False, progress=False)

    def session(iterations: int) -> float:
        start = trainer.state.train_seconds
        trainer.fit(stop_at=trainer.state.iteration + iterations)
        return trainer.state.train_seconds - start

    trainer.fit(stop_at=PROBE_WARMUP)
    short = session(1)
    long = session(PROBE_TIMED + 1)
    # a start-up slower in the short session than in the long one can leave no positive difference:
    # then the long session's mean, start-up included, is the estimate
    return (long - short) / PROBE_TIMED if long > short else long / (PROBE_TIMED + 1)
