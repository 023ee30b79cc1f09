"""The built-in demo: supervised, Mean Teacher and Dual Teacher on digit scenes, 1/32 labelled,
against supervised training with every train scene labelled (the upper bound).

Everything ships offline: real MNIST digits and real textures from installed packages, and
real ImageNet weights for the EfficientNet-Lite0 encoder. The protocol has a supervised warm
start (:mod:`dualteacher.training.warm_start`): one supervised run of the benchmark's
:data:`~dualteacher.experiments.recipe.WARMUP_ITERATIONS` (300) on the
labelled scenes, then every method, supervised included, continues from its student for
:data:`DEMO_ITERATIONS` with the shared recipe (:mod:`dualteacher.experiments.recipe`), the same data and
seed. The upper bound trains from the ImageNet encoder for the same total number of iterations.
Every time in the table is training time read from the runs' logs and counts the warm-up's, so a
second call on the same directory, which reuses the finished runs, reports the same table. The
demo reports a table (logging) and writes a figure.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualteacher.data.digits import ensure_digit_scenes
from dualteacher.data.registry import open_source
from dualteacher.data.split_files import split_source
from dualteacher.experiments.recipe import (
    BASELINE,
    UPPER_BOUND,
    WARMUP_ITERATIONS,
    recipe_config,
    run_length,
    warm_start,
)
from dualteacher.runlog import read_log
from dualteacher.training.loop import train

logger = logging.getLogger(__name__)

LABELED_FRACTION = 1 / 32
DEMO_ITERATIONS = 200
"""Iterations of each method after the warm-up (the benchmark's 700 would take the demo past 12
minutes on 2 CPU cores)."""
DEMO_METHODS = (BASELINE, "mean_teacher", "dual_teacher")
WARMUP = "warmup"


@dataclass(frozen=True)
class DemoRun:
    """One training run of the demo: its row name, method, splits, length and warm start."""

    name: str
    method: str
    labeled: str
    unlabeled: str
    iterations: int
    warm_start: bool


def demo_runs(
    methods: Sequence[str], labeled: str, unlabeled: str, iterations: int, warmup: int, upper_bound: bool
) -> list[DemoRun]:
    """The runs in training order: the warm-up (when ``warmup`` > 0), each method, the upper bound."""
    runs = [DemoRun(WARMUP, BASELINE, labeled, unlabeled, warmup, False)] if warmup else []
    runs += [DemoRun(m, m, labeled, unlabeled, iterations, warmup > 0) for m in methods]
    if upper_bound:
        runs.append(DemoRun(UPPER_BOUND, BASELINE, "train", "train", warmup + iterations, False))
    return runs


def run_demo(
    out: Path,
    *,
    methods: Sequence[str] | None = None,
    iterations: int | None = None,
    warmup: int | None = None,
    seed: int = 0,
    progress: bool = True,
    upper_bound: bool = True,
    extra: Sequence[str] = (),
) -> list[dict[str, Any]] | None:
    """Train the warm-up, every method (default :data:`DEMO_METHODS`) from it on the labelled
    fraction and, with ``upper_bound``, supervised training on every train scene (row
    ``supervised_all``); log the table, write ``results.json`` and ``demo.png``.

    ``warmup`` 0 trains every method from the ImageNet encoder instead; ``extra`` (``key=value``)
    goes after the recipe in every run. A run already finished in ``out`` (an earlier call) is
    reused, and said so. Returns one row per method and the upper bound, whose ``train_seconds``
    include the warm-up's for warm-started runs; None if a run was interrupted (SIGINT/SIGTERM:
    its checkpoint is kept and the next call continues it; no later run starts from a partial one).
    """
    methods = methods or DEMO_METHODS
    iterations = DEMO_ITERATIONS if iterations is None else iterations
    warmup = WARMUP_ITERATIONS if warmup is None else warmup
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    root = ensure_digit_scenes()
    source = open_source("folder", root)
    labeled, unlabeled = split_source(source, LABELED_FRACTION, seed)
    logger.info(f"digit scenes at {root} (ready in {time.perf_counter() - t0:.1f}s); labelled list {labeled.name}")
    runs = demo_runs(methods, labeled.stem, unlabeled.stem, iterations, warmup, upper_bound)
    if iterations < 1 or warmup < 0:
        raise ValueError(f"the demo needs iterations >= 1 and warmup >= 0, got {iterations} and {warmup}")
    rows, warmup_seconds, warmup_iterations = [], 0.0, 0
    for run in runs:
        start_from = warm_start(out / WARMUP) if run.warm_start else []
        cfg = recipe_config(
            root, run.labeled, run.unlabeled, run.method, out / run.name, run.iterations, seed, [*extra, *start_from]
        )
        trained = run_length(cfg)  # the schedule rounds to whole epochs
        if _finished(out / run.name, trained):
            logger.info(f"{run.name}: finished in an earlier call, reused (delete {out} to train it again)")
        record = train(cfg, progress=progress)
        if "interrupted" in record:
            logger.warning(f"{run.name}: interrupted; its checkpoint is kept, run the demo again to continue")
            return None
        seconds = record["train_seconds"]
        if run.name == WARMUP:
            warmup_seconds, warmup_iterations = seconds, trained
            continue
        before = (warmup_seconds, warmup_iterations) if run.warm_start else (0.0, 0)
        rows.append(_row(out / run.name, run.name, seconds, trained, before))
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    logger.info(format_table(rows))
    from dualteacher.experiments.plots import demo_figure

    offsets = {run.name: warmup_iterations for run in runs if run.warm_start}
    figure = demo_figure(
        out,
        [run.name for run in runs if run.name != WARMUP],
        source,
        offsets=offsets,
        warmup=out / WARMUP if warmup else None,
        disputed_by=methods,
    )
    logger.info(f"figure: {figure}")
    logger.info(f"the demo took {time.perf_counter() - t0:.0f} s (evaluations, the figure and start-up included)")
    return rows


def _finished(run_dir: Path, iterations: int) -> bool:
    """Whether ``run_dir`` holds a run whose log has an evaluation at ``iterations``."""
    return (run_dir / "metrics.jsonl").exists() and any(
        r["type"] == "eval" and r["iteration"] == iterations for r in read_log(run_dir)
    )


def _row(run_dir: Path, name: str, seconds: float, iterations: int, before: tuple[float, int]) -> dict[str, Any]:
    """One table row from a finished run's log; training seconds and iterations include those
    ``before`` it (the warm-up's, zero for a run that is not warm-started)."""
    records = [r for r in read_log(run_dir) if r["type"] == "eval"]
    final = records[-1]
    return {
        "method": name,
        "final_student_miou": final["student/miou"],
        "best_miou": max(v for r in records for k, v in r.items() if k.endswith("/miou")),
        "final_teacher_miou": {k: v for k, v in final.items() if k.endswith("/miou") and not k.startswith("student")},
        "train_seconds": before[0] + seconds,
        "warmup_train_seconds": before[0],
        "iterations": before[1] + iterations,
    }


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the demo results (training times include the warm-up's)."""
    lines = [
        "| run | student mIoU (final) | best mIoU (any model, any eval) | training time incl. warm-up (s) | iterations | s / iteration |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['method']} | {r['final_student_miou']:.4f} | {r['best_miou']:.4f} | {r['train_seconds']:.0f} | "
        f"{r['iterations']} | {r['train_seconds'] / r['iterations']:.3f} |"
        for r in rows
    ]
    return "\n".join(lines)
