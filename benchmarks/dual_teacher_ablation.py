"""Why Dual Teacher trails Mean Teacher on the digit scenes: remove one of its parts at a time.

Dual Teacher differs from Mean Teacher (same views, losses and threshold) in four parts: two
temporary teachers taking turns every epoch and restarted from the student at each shift, ClassMix
for the second teacher, the implicit-consistency term on the un-mixed strong view, and the
student's drop-path 0.1. Each row trains the shared recipe (:mod:`dualteacher.experiments.recipe`) on
``--labeled`` (1/32) of the train scenes drawn with ``--seed`` (0) for ``--iterations`` with the
row's overrides, evaluating every epoch, and prints the final student val mIoU; finished rows
are kept in ``OUT/ablation_<iterations>.json`` with their overrides, and not re-run while those
are the same. ``--init-from RUN`` starts every row from a supervised warm-up on the same
labelled split (``method.init_from``; the protocol of ``dualteacher compare``), e.g. the
comparison's own ``runs/compare/1-32_seed1_supervised_warmup300``. Other budgets, seeds or
warm-ups keep their rows apart: ``OUT/ablation_<iterations>_<budget>_seed<seed>[_after_<warm-up>_<hash>].json``
and run directories under ``RUNS/<iterations>...``. ``--data DIR`` trains on another folder-layout
dataset instead of the built-in digit scenes, and ``key=value`` overrides go after every row's
own; either keeps its rows apart too (``_on_<name>_<hash>``, ``_with_<hash>``).
The last row, Dual Teacher with one persistent teacher, no consistency term, no drop-path and
CutMix, is Mean Teacher (a test checks the two steps are bitwise equal).

    python benchmarks/dual_teacher_ablation.py                   # every row, ~40 min alone at 400 iterations
    python benchmarks/dual_teacher_ablation.py --rows "Mean"     # rows whose name starts with a prefix
    python benchmarks/dual_teacher_ablation.py --iterations 700 --seed 1 --init-from runs/compare/1-32_seed1_supervised_warmup300
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import torch

from dualteacher.config import load_config
from dualteacher.data.digits import ensure_digit_scenes
from dualteacher.data.registry import open_source
from dualteacher.data.split_files import split_source
from dualteacher.data.splits import budget_tag, parse_labeled
from dualteacher.experiments.recipe import recipe_config
from dualteacher.runlog import read_log
from dualteacher.training.loop import train

ONE_TEACHER = ["method.mixings=[cutmix]", "method.num_teachers=1", "method.restart_per_shift=false"]
ROWS: dict[str, tuple[str, list[str]]] = {
    "Dual Teacher (the paper's settings)": ("dual_teacher", []),
    "- drop-path (student at full depth)": ("dual_teacher", ["method.student_drop_path=0.0"]),
    "- implicit consistency (weight 0)": ("dual_teacher", ["method.icl_weight=0.0"]),
    "- ClassMix (CutMix for both teachers)": ("dual_teacher", ["method.mixings=[cutmix]"]),
    "- switching (one persistent teacher)": ("dual_teacher", ONE_TEACHER),
    "Mean Teacher": ("mean_teacher", []),
}


def run_row(
    name: str,
    method: str,
    overrides: list[str],
    root: Path,
    runs: Path,
    iterations: int,
    labeled_budget: str = "1/32",
    seed: int = 0,
) -> dict:
    """Train one row; its final student mIoU, its eval curve and its training seconds."""
    labeled, unlabeled = split_source(open_source("folder", root), labeled_budget, seed)
    run = runs / "".join(c if c.isalnum() else "_" for c in name)
    cfg = recipe_config(
        root,
        labeled.stem,
        unlabeled.stem,
        method,
        run,
        iterations,
        seed,
        ["train.eval_every=1", "train.probe_images=0", *overrides],
    )
    train(cfg, progress=False)
    evals = [r for r in read_log(run) if r["type"] == "eval"]
    return {
        "miou": evals[-1]["student/miou"],
        "curve": [round(r["student/miou"], 4) for r in evals],
        "train_seconds": evals[-1]["train_seconds"],
        "threads": torch.get_num_threads(),
    }


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def experiment_key(
    labeled: str, seed: int, init_from: Path | None, data: Path | None = None, overrides: list[str] | None = None
) -> str:
    """What keeps an experiment's rows apart: empty for the original one (1/32, seed 0, from the
    encoder, on the digit scenes, no overrides), else ``_<budget>_seed<seed>``, with a warm start
    ``_after_<name>_<hash>`` (the hash of its resolved path, so two warm-ups of one name do not
    collide), on another dataset ``_on_<name>_<hash>`` and with overrides ``_with_<hash>``."""
    if labeled == "1/32" and seed == 0 and init_from is None and data is None and not overrides:
        return ""
    key = f"_{budget_tag(parse_labeled(labeled))}_seed{seed}"
    if init_from is not None:
        resolved = init_from.resolve()
        name = resolved.parent.name if resolved.is_file() else resolved.name
        key += f"_after_{name}_{_short_hash(str(resolved))}"
    if data is not None:
        key += f"_on_{data.resolve().name}_{_short_hash(str(data.resolve()))}"
    if overrides:
        key += f"_with_{_short_hash(' '.join(overrides))}"
    return key


def check_warm_up(init_from: Path, labeled_split: str) -> None:
    """Stop unless the warm-up run (a run directory or a file in one) trained on ``labeled_split``."""
    run_dir = init_from if init_from.is_dir() else init_from.parent
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise SystemExit(f"--init-from {init_from}: no {config} tells which labelled split it trained on")
    trained_on = load_config(str(config), []).data.labeled_split
    if trained_on != labeled_split:
        raise SystemExit(
            f"--init-from {init_from} trained on {trained_on}, not on {labeled_split}: "
            "give the warm-up of the same --labeled and --seed"
        )


def build_parser() -> argparse.ArgumentParser:
    """The script's options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dual_teacher_ablation"))
    parser.add_argument("--runs", type=Path, default=Path("runs/dual_teacher_ablation"))
    parser.add_argument("--rows", nargs="*", default=[], help="only rows whose name starts with one of these")
    parser.add_argument("--labeled", default="1/32", help="label budget of the train scenes (default 1/32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split and of training (default 0)")
    parser.add_argument("--init-from", type=Path, help="warm start: a supervised run (method.init_from) for every row")
    parser.add_argument(
        "--data",
        type=Path,
        help="a folder-layout dataset to train on (default: the built-in digit scenes, built if missing)",
    )
    parser.add_argument("overrides", nargs="*", default=[], help="key=value settings after every row's own")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Train the rows not yet done and print the table; exit status 0."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    root = args.data if args.data is not None else ensure_digit_scenes()
    # after every row's own settings: the warm start, then the user's overrides
    extra = [*([f"method.init_from={args.init_from}"] if args.init_from else []), *args.overrides]
    if args.init_from:
        labeled, _ = split_source(open_source("folder", root), args.labeled, args.seed)
        check_warm_up(args.init_from, labeled.stem)
    key = experiment_key(args.labeled, args.seed, args.init_from, args.data, args.overrides)
    path = args.out / f"ablation_{args.iterations}{key}.json"
    runs = args.runs / f"{args.iterations}{key}"
    done = json.loads(path.read_text()) if path.exists() else {}
    print(
        f"| row ({args.labeled} labelled, seed {args.seed}, {args.iterations} iterations"
        f"{f' after {args.init_from}' if args.init_from else ''}) | student mIoU | curve (every epoch) |"
    )
    print("|---|---|---|")
    for name, (method, overrides) in ROWS.items():
        if args.rows and not any(name.startswith(p) for p in args.rows):
            continue
        settings = [method, *overrides, *extra]
        if name not in done or done[name].get("overrides") != settings:
            start = time.perf_counter()
            done[name] = {
                **run_row(name, method, [*overrides, *extra], root, runs, args.iterations, args.labeled, args.seed),
                "seconds": time.perf_counter() - start,
                "overrides": settings,
            }
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(done, indent=1))
        print(
            f"| {name} | {done[name]['miou']:.3f} | {' '.join(f'{v:.2f}' for v in done[name]['curve'])} |", flush=True
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
