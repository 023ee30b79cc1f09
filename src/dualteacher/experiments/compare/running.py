"""Running a comparison's runs: each in a fresh spawned process (``jobs`` at a time), its summary
written atomically when it finishes; and the probe's worker behind ``--minutes``."""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import resource
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from dualteacher.experiments.compare.grid import Run
from dualteacher.experiments.compare.resuming import SETTINGS_VERSION
from dualteacher.experiments.probe import device_name, step_seconds
from dualteacher.experiments.recipe import run_length
from dualteacher.runlog import read_log
from dualteacher.training.loop import train

logger = logging.getLogger(__name__)


def peak_memory_mb() -> float:
    """Peak memory of this process: allocated CUDA memory if a GPU trained, else peak RSS."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(run: Run) -> dict[str, Any] | None:
    """Train ``run`` in this (fresh) process and write its summary; None if it was interrupted
    (SIGTERM/SIGINT: its checkpoint is kept, the next call continues it)."""
    torch.set_num_threads(run.threads)
    cfg = run.config()
    start = time.perf_counter()
    record = train(cfg, progress=False)
    if "interrupted" in record:
        return None
    evals = [r for r in read_log(Path(run.run_dir)) if r["type"] == "eval"]
    final = evals[-1]
    iterations = run_length(cfg)
    summary = {
        "name": run.name,
        "variant": run.variant,
        "method": run.method,
        "seed": run.seed,
        "fraction": run.fraction,
        "budget": run.budget,
        "iterations": iterations,
        "student_miou": final["student/miou"],
        "best_final_miou": max(v for k, v in final.items() if k.endswith("/miou")),
        "train_seconds": final["train_seconds"],
        "s_per_it": final["train_seconds"] / iterations,
        "total_seconds": time.perf_counter() - start,
        "peak_memory_mb": peak_memory_mb(),
        "threads": run.threads,
        "device": device_name(),
        "settings": run.settings,
        "settings_version": SETTINGS_VERSION,
        "data": run.data_digest,
        "curve": [[r["train_seconds"], r["student/miou"]] for r in evals],
    }
    if run.warmup_summary:
        summary = _after_warmup(summary, json.loads(Path(run.warmup_summary).read_text()))
    path = Path(run.summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, path)
    return summary


def _after_warmup(summary: dict[str, Any], warmup: dict[str, Any]) -> dict[str, Any]:
    """A warm-started run's summary that counts its warm-up: iterations and training seconds
    added, the warm-up's curve first and the run's shifted by the warm-up's training time;
    ``s_per_it`` stays the run's own steps', ``total_seconds`` (wall time with evaluations and
    start-up) the run's own, and ``warmup`` records what was added."""
    seconds = warmup["train_seconds"]
    return {
        **summary,
        "iterations": warmup["iterations"] + summary["iterations"],
        "train_seconds": seconds + summary["train_seconds"],
        "curve": [*warmup["curve"], *([t + seconds, m] for t, m in summary["curve"])],
        "warmup": {"name": warmup["name"], "iterations": warmup["iterations"], "train_seconds": seconds},
    }


def probe_worker(run: Run) -> float:
    """In a fresh process with the run's threads: :func:`~dualteacher.experiments.probe.step_seconds`
    of ``run``, in its run directory, removed before and after."""
    torch.set_num_threads(run.threads)
    shutil.rmtree(run.run_dir, ignore_errors=True)
    seconds = step_seconds(run.config())
    shutil.rmtree(run.run_dir, ignore_errors=True)
    return seconds


def launch(runs: list[Run], jobs: int, done: Callable[[dict], None]) -> list[str]:
    """Train ``runs``, ``jobs`` at a time, each in a fresh spawned process; call ``done`` with each
    summary as it arrives; return the names of runs that failed or were interrupted."""
    failed = []
    with ProcessPoolExecutor(
        min(jobs, len(runs)),
        mp_context=mp.get_context("spawn"),
        max_tasks_per_child=1,
        initializer=_log_at,
        initargs=(logging.getLogger("dualteacher").getEffectiveLevel(),),
    ) as pool:
        futures = {pool.submit(run_one, run): run for run in runs}
        for future in as_completed(futures):
            run = futures[future]
            try:
                summary = future.result()
            except Exception as error:  # one failed run must not stop the grid
                logger.warning(f"{run.name}: failed: {type(error).__name__}: {error}")
                failed.append(run.name)
                continue
            if summary is None:
                logger.warning(f"{run.name}: interrupted; its checkpoint is kept for the next call")
                failed.append(run.name)
                continue
            logger.info(
                f"{run.name}: student mIoU {summary['student_miou']:.4f}, {summary['s_per_it']:.3f} s/it, "
                f"{summary['train_seconds']:.0f} s training"
            )
            done(summary)
    return failed


def _log_at(level: int) -> None:
    """In a run's process: report at the level the comparing process reports at (a spawned
    process imports the package afresh, at INFO)."""
    logging.getLogger("dualteacher").setLevel(level)
