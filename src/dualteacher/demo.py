"""The built-in demo: supervised, Mean Teacher and Dual Teacher on digit scenes, 1/16 labelled.

Everything ships offline: real MNIST digits and real textures from installed packages, and
real ImageNet weights for the EfficientNet-Lite0 encoder. Every method gets the same model,
data, seed and number of iterations; the demo prints a table and writes a figure.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .config import Config, load_config
from .data.digits import ensure_digit_scenes
from .data.splits import write_split
from .engine import train
from .runlog import read_log

LABELED_FRACTION = 1 / 16
DEMO_ITERATIONS = 1000
ITERS_PER_EPOCH = 50

DEMO_SETTINGS = [
    "model.arch=deeplabv3plus",
    "model.encoder=tu-tf_efficientnet_lite0",
    "model.weights=efficientnet-lite0",
    "model.decoder_channels=64",
    "data.crop_size=64",
    "data.scale_range=[0.75, 1.5]",
    "data.workers=1",
    "data.val_batch_size=50",
    "optim.name=adamw",
    "optim.lr=0.001",
    "optim.head_lr_mult=10",
    "optim.weight_decay=0.01",
    "optim.warmup_iters=50",
    "train.batch_size=8",
    "train.unlabeled_batch_size=8",
    f"train.iters_per_epoch={ITERS_PER_EPOCH}",
    "train.eval_every=2",
    "train.log_every=10",
    "train.probe_images=16",
]
METHOD_SETTINGS = {
    "supervised": [],
    "mean_teacher": ["method.mixings=[cutmix]", "method.student_drop_path=0.0"],
    "dual_teacher": [],
    "fixmatch": ["method.mixings=[cutmix]", "method.student_drop_path=0.0"],
    "unimatch": ["method.mixings=[cutmix]", "method.student_drop_path=0.0"],
}


def demo_config(
    data_root: Path,
    labeled: str,
    unlabeled: str,
    method: str,
    run_dir: Path,
    iterations: int,
    seed: int,
    extra: list[str] | tuple[str, ...] = (),
) -> Config:
    """The demo's settings for one method (``extra`` overrides go last)."""
    return load_config(
        None,
        [
            *DEMO_SETTINGS,
            f"data.root={data_root}",
            f"data.labeled_split={labeled}",
            f"data.unlabeled_split={unlabeled}",
            f"method.name={method}",
            *METHOD_SETTINGS[method],
            f"train.epochs={max(1, iterations // ITERS_PER_EPOCH)}",
            f"train.seed={seed}",
            f"run_dir={run_dir}",
            *extra,
        ],
    )


def run_demo(out: Path, *, methods: list[str], iterations: int | None = None, seed: int = 0, progress: bool = True) -> list[dict[str, Any]]:
    """Train every method, print the comparison table, write ``results.json`` and ``demo.png``."""
    iterations = iterations or DEMO_ITERATIONS
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    root = ensure_digit_scenes()
    labeled, unlabeled = write_split(root, LABELED_FRACTION, seed)
    print(f"digit scenes at {root} (ready in {time.perf_counter() - t0:.1f}s); labelled list {labeled.name}")
    rows = []
    for method in methods:
        cfg = demo_config(root, labeled.stem, unlabeled.stem, method, out / method, iterations, seed)
        start = time.perf_counter()
        train(cfg, progress=progress)
        seconds = time.perf_counter() - start
        records = [r for r in read_log(out / method) if r["type"] == "eval"]
        final = records[-1]
        rows.append(
            {
                "method": method,
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

    figure = demo_figure(out, methods, root)
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
