"""Why Dual Teacher trails Mean Teacher on the digit scenes: remove one of its parts at a time.

Dual Teacher differs from Mean Teacher (same views, losses and threshold) in four parts: two
temporary teachers taking turns every epoch and restarted from the student at each shift, ClassMix
for the second teacher, the implicit-consistency term on the un-mixed strong view, and the
student's drop-path 0.1. Each row trains the shared recipe (:mod:`dualteacher.recipe`) on
``--labeled`` (1/32) of the train scenes drawn with ``--seed`` (0) for ``--iterations`` with the
row's overrides, evaluating every epoch, and prints the final student val mIoU; finished rows
are kept in ``OUT/ablation_<iterations>.json`` with their overrides, and not re-run while those
are the same. ``--init-from CHECKPOINT`` starts every row from a supervised warm-up
(``method.init_from``; the protocol of ``dualteacher compare``), e.g. the comparison's own
``runs/compare/1-32_seed1_supervised_warmup300``; its rows go to
``OUT/ablation_<iterations>_after_<warm-up directory>.json``.
The last row, Dual Teacher with one persistent teacher, no consistency term, no drop-path and
CutMix, is Mean Teacher (a test checks the two steps are bitwise equal).

    python benchmarks/dual_teacher_ablation.py                   # every row, ~40 min alone at 400 iterations
    python benchmarks/dual_teacher_ablation.py --rows "Mean"     # rows whose name starts with a prefix
    python benchmarks/dual_teacher_ablation.py --iterations 700 --seed 1 --init-from runs/compare/1-32_seed1_supervised_warmup300
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from dualteacher.data.digits import ensure_digit_scenes
from dualteacher.data.registry import open_source
from dualteacher.data.split_files import split_source
from dualteacher.engine import train
from dualteacher.recipe import recipe_config
from dualteacher.runlog import read_log

ONE_TEACHER = ["method.mixings=[cutmix]", "method.num_teachers=1", "method.restart_per_shift=false"]
ROWS: dict[str, tuple[str, list[str]]] = {
    "Dual Teacher (the paper's settings)": ("dual_teacher", []),
    "- drop-path (student at full depth)": ("dual_teacher", ["method.student_drop_path=0.0"]),
    "- implicit consistency (weight 0)": ("dual_teacher", ["method.icl_weight=0.0"]),
    "- ClassMix (CutMix for both teachers)": ("dual_teacher", ["method.mixings=[cutmix]"]),
    "- switching (one persistent teacher)": ("dual_teacher", ONE_TEACHER),
    "Mean Teacher": ("mean_teacher", []),
}


def run_row(name: str, method: str, overrides: list[str], root: Path, runs: Path, iterations: int,
            labeled_budget: str = "1/32", seed: int = 0) -> dict:
    """Train one row; its final student mIoU, its eval curve and its training seconds."""
    labeled, unlabeled = split_source(open_source("folder", root), labeled_budget, seed)
    run = runs / "".join(c if c.isalnum() else "_" for c in name)
    cfg = recipe_config(root, labeled.stem, unlabeled.stem, method, run, iterations, seed,
                        ["train.eval_every=1", "train.probe_images=0", *overrides])
    train(cfg, progress=False)
    evals = [r for r in read_log(run) if r["type"] == "eval"]
    return {"miou": evals[-1]["student/miou"], "curve": [round(r["student/miou"], 4) for r in evals],
            "train_seconds": evals[-1]["train_seconds"], "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dual_teacher_ablation"))
    parser.add_argument("--runs", type=Path, default=Path("runs/dual_teacher_ablation"))
    parser.add_argument("--rows", nargs="*", default=[], help="only rows whose name starts with one of these")
    parser.add_argument("--labeled", default="1/32", help="label budget of the train scenes (default 1/32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and of training (default 0)")
    parser.add_argument("--init-from", type=Path, help="warm start: a supervised run (method.init_from) for every row")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    root = ensure_digit_scenes()
    start_from = [f"method.init_from={args.init_from}"] if args.init_from else []
    suffix = f"_after_{args.init_from.resolve().name}" if args.init_from else ""
    path = args.out / f"ablation_{args.iterations}{suffix}.json"
    runs = args.runs / f"{args.iterations}{suffix}" if args.init_from else args.runs
    done = json.loads(path.read_text()) if path.exists() else {}
    print(f"| row ({args.labeled} labelled, seed {args.seed}, {args.iterations} iterations"
          f"{f' after {args.init_from}' if args.init_from else ''}) | student mIoU | curve (every epoch) |")
    print("|---|---|---|")
    for name, (method, overrides) in ROWS.items():
        if args.rows and not any(name.startswith(p) for p in args.rows):
            continue
        settings = [method, *overrides, *start_from, f"labeled={args.labeled}", f"seed={args.seed}"]
        if args.labeled == "1/32" and args.seed == 0 and not start_from:
            settings = [method, *overrides]  # the rows made before --labeled/--seed/--init-from existed
        if name not in done or done[name].get("overrides") != settings:
            start = time.perf_counter()
            done[name] = {**run_row(name, method, [*overrides, *start_from], root, runs, args.iterations,
                                    args.labeled, args.seed),
                          "seconds": time.perf_counter() - start, "overrides": settings}
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(done, indent=1))
        print(f"| {name} | {done[name]['miou']:.3f} | {' '.join(f'{v:.2f}' for v in done[name]['curve'])} |", flush=True)


if __name__ == "__main__":
    main()
