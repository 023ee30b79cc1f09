"""Semi-supervised benchmark on the digit scenes: methods × labelled fractions × seeds.

Runs supervised, Mean Teacher and Dual Teacher (and Dual Teacher with persistent teachers) at
1/16 and 1/8 labelled for several seeds, plus the fully-labelled supervised upper bound, all
with the demo's model and settings, and writes:

  OUT/table.md                 mean ± std of the final student mIoU (and of the best final network)
  OUT/results.json             every run's numbers
  OUT/summaries/<run>.json     one file per finished run (kept with the results)
  OUT/coupling.png             teacher–student coupling over training (first seed, smallest fraction)

Each run trains in RUNS/<fraction>_seed<S>_<variant>. Runs with a summary are skipped and
interrupted ones resume from their checkpoint, so the script can be stopped and started again.

    python benchmarks/ssl_benchmark.py --iterations 3000 --seeds 0 1 2 --fractions 1/16 1/8
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from dualteacher.data.digits import ensure_digit_scenes
from dualteacher.data.splits import budget_tag, parse_labeled, write_split
from dualteacher.demo import METHOD_SETTINGS, demo_config
from dualteacher.engine import train
from dualteacher.runlog import read_log

VARIANTS: dict[str, tuple[str, list[str]]] = {
    "supervised": ("supervised", []),
    "mean_teacher": ("mean_teacher", METHOD_SETTINGS["mean_teacher"]),
    "dual_teacher": ("dual_teacher", []),
    "dual_teacher_persistent": ("dual_teacher", ["method.restart_per_shift=false"]),
}


def run_one(
    root: Path, labeled: str, unlabeled: str, variant: str, run_dir: Path, summary_path: Path, iterations: int, seed: int
) -> dict:
    """Train one configuration (or reuse its finished result) and summarise its last evaluation."""
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    method, extra = VARIANTS[variant]
    cfg = demo_config(root, labeled, unlabeled, method, run_dir, iterations, seed, extra)
    start = time.perf_counter()
    train(cfg, progress=False)
    evals = [r for r in read_log(run_dir) if r["type"] == "eval"]
    final = evals[-1]
    summary = {
        "variant": variant,
        "seed": seed,
        "labeled_split": labeled,
        "student_miou": final["student/miou"],
        "best_final_miou": max(v for k, v in final.items() if k.endswith("/miou")),
        "seconds": time.perf_counter() - start,
        "iterations": cfg.train.epochs * cfg.train.iters_per_epoch,
    }
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=1))
    return summary


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.4f} (1 seed)"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def write_table(results: list[dict], fractions: list[str], variants: list[str], path: Path) -> str:
    """Markdown: one row per variant, one column pair per labelled fraction."""
    head = "| method | " + " | ".join(f"{f}: student mIoU | {f}: best final network" for f in fractions) + " |"
    lines = [head, "|---|" + "---|---|" * len(fractions)]
    for variant in variants:
        cells = []
        for f in fractions:
            rows = [r for r in results if r["variant"] == variant and r["fraction"] == f]
            cells += [_cell([r["student_miou"] for r in rows]), _cell([r["best_final_miou"] for r in rows])]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    full = [r for r in results if r["fraction"] == "all"]
    if full:
        value = _cell([r["student_miou"] for r in full])
        lines.append("| supervised, all train scenes labelled | " + " | ".join([value, value] * len(fractions)) + " |")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ssl"))
    parser.add_argument("--runs", type=Path, default=Path("runs/ssl_benchmark"))
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", nargs="+", default=["1/16", "1/8"])
    parser.add_argument("--variants", nargs="+", default=["supervised", "mean_teacher", "dual_teacher"], choices=list(VARIANTS))
    parser.add_argument("--no-upper-bound", action="store_true", help="skip the fully-labelled supervised runs")
    parser.add_argument("--report-only", action="store_true", help="train nothing: tabulate the finished runs")
    args = parser.parse_args()

    root = ensure_digit_scenes()
    plan = []
    for i, fraction in enumerate(args.fractions):
        budget = parse_labeled(fraction)
        for seed in args.seeds:
            plan += [(fraction, budget, seed, variant) for variant in args.variants]
        if i == 0 and not args.no_upper_bound:
            plan += [("all", None, seed, "supervised") for seed in args.seeds]
    results = []
    for fraction, budget, seed, variant in plan:
        if budget is None:
            labeled, unlabeled, name = "train", "train", f"all_seed{seed}_supervised"
        else:
            lab_path, unl_path = write_split(root, budget, seed)
            labeled, unlabeled, name = lab_path.stem, unl_path.stem, f"{budget_tag(budget)}_seed{seed}_{variant}"
        summary_path = args.out / "summaries" / f"{name}.json"
        if args.report_only and not summary_path.exists():
            continue
        summary = run_one(root, labeled, unlabeled, variant, args.runs / name, summary_path, args.iterations, seed)
        results.append({**summary, "fraction": fraction})
        print(json.dumps(results[-1]), flush=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        write_table(results, args.fractions, args.variants, args.out / "table.md")
    print(write_table(results, args.fractions, args.variants, args.out / "table.md"))

    from dualteacher.plots import coupling_figure

    first = budget_tag(parse_labeled(args.fractions[0]))
    runs = {v: args.runs / f"{first}_seed{args.seeds[0]}_{v}" for v in args.variants}
    runs = {v: run for v, run in runs.items() if (run / "metrics.jsonl").exists()}
    print(f"figure: {coupling_figure(runs, args.out / 'coupling.png')}")


if __name__ == "__main__":
    main()
