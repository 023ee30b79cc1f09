"""The built-in demo: supervised, Mean Teacher and Dual Teacher on digit scenes, 1/32 labelled,
against supervised training with every train scene labelled (the upper bound).

Everything ships offline: real MNIST digits and real textures from installed packages, and
real ImageNet weights for the EfficientNet-Lite0 encoder. Every method gets the shared recipe
(:mod:`dualteacher.recipe`), the same data, seed and number of iterations; the demo prints a
table and writes a figure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .data.digits import ensure_digit_scenes
from .data.registry import open_source
from .data.split_files import split_source
from .engine import train
from .recipe import BASELINE, ITERATIONS, UPPER_BOUND, recipe_config
from .runlog import read_log

LABELED_FRACTION = 1 / 32
DEMO_ITERATIONS = ITERATIONS * 3 // 5
"""60 % of the benchmark's run: the four runs took 18 minutes on 2 CPU cores (README)."""
DEMO_METHODS = (BASELINE, "mean_teacher", "dual_teacher")


def run_demo(out: Path, *, methods: Sequence[str] | None = None, iterations: int | None = None, seed: int = 0,
             progress: bool = True, upper_bound: bool = True) -> list[dict[str, Any]]:
    """Train every method (default :data:`DEMO_METHODS`) on the labelled fraction and, with
    ``upper_bound``, supervised training on every train scene (row ``supervised_all``); print the
    table, write ``results.json`` and ``demo.png``."""
    methods = methods or DEMO_METHODS
    iterations = iterations or DEMO_ITERATIONS
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    root = ensure_digit_scenes()
    source = open_source("folder", root)
    labeled, unlabeled = split_source(source, LABELED_FRACTION, seed)
    print(f"digit scenes at {root} (ready in {time.perf_counter() - t0:.1f}s); labelled list {labeled.name}")
    runs = [(m, m, labeled.stem, unlabeled.stem) for m in methods]
    if upper_bound:
        runs.append((UPPER_BOUND, BASELINE, "train", "train"))
    rows = []
    for name, method, labeled_split, unlabeled_split in runs:
        cfg = recipe_config(root, labeled_split, unlabeled_split, method, out / name, iterations, seed)
        start = time.perf_counter()
        train(cfg, progress=progress)
        seconds = time.perf_counter() - start
        records = [r for r in read_log(out / name) if r["type"] == "eval"]
        final = records[-1]
        rows.append(
            {
                "method": name,
                "final_student_miou": final["student/miou"],
                "best_miou": max(v for r in records for k, v in r.items() if k.endswith("/miou")),
                "final_teacher_miou": {k: v for k, v in final.items() if k.endswith("/miou") and not k.startswith("student")},
                "seconds": seconds,
                "iterations": cfg.train.epochs * cfg.train.iters_per_epoch,
            }
        )
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(format_table(rows))
    from .plots import demo_figure

    figure = demo_figure(out, [name for name, *_ in runs], source)
    print(f"figure: {figure}")
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the demo results."""
    lines = [
        "| method | student mIoU (final) | best mIoU (any model, any eval) | wall time (s) | s / iteration |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['final_student_miou']:.4f} | {r['best_miou']:.4f} | {r['seconds']:.0f} | "
            f"{r['seconds'] / r['iterations']:.3f} |"
        )
    return "\n".join(lines)
