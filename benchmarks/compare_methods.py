"""Method comparison on the digit scenes: supervised, Mean Teacher, FixMatch, UniMatch, Dual Teacher.

Every method gets the demo's model, data pipeline and optimiser, at each labelled fraction and
seed, under two budgets:

  equal iterations   every method trains ``--iterations`` iterations;
  equal wall-clock   every method trains for the training time the reference method
                     (``--reference``, Dual Teacher) needed for ``--iterations`` iterations:
                     method m gets round(N · s_ref / s_m) iterations, s the mean seconds per
                     training iteration measured in the same seed's equal-iterations runs
                     (evaluation excluded); the schedule (warm-up + poly) is fitted to that length.

Extra variants (``--variants``, e.g. ``dual_teacher_persistent``) and the fully-labelled
supervised upper bound (``--upper-bound``) run under the equal-iterations budget only.
Each run is a fresh process (``--jobs`` at a time, the CPU threads shared out), so its peak
memory is its own: peak RSS on the CPU, peak allocated tensor memory on CUDA. Writes:

  OUT/table.md               both budgets: mIoU mean ± std over seeds, s/it, times, peak memory
  OUT/miou_vs_time.png       val mIoU of the student against training wall-clock time
  OUT/coupling.png           teacher–student coupling over training (first seed and fraction)
  OUT/results.json           every run's summary (also OUT/summaries/<run>.json, one per run)

Runs with a summary are reused and interrupted ones resume from their checkpoint, so the script
can be stopped and started again. ``--set KEY=VALUE`` overrides go to every run (e.g.
``train.amp=off`` on a GPU, to train in float32 like the CPU); each summary records them and the
device. Without the equal-wall-clock budget every seed's runs share one pool (fraction by fraction).

    python benchmarks/compare_methods.py --iterations 1000 --seeds 0 1 2 --fractions 1/16 1/8 --jobs 2 \\
        --variants dual_teacher_persistent
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from dualteacher.data.digits import ensure_digit_scenes
from dualteacher.data.splits import budget_tag, parse_labeled, write_split
from dualteacher.engine import train
from dualteacher.plots import coupling_figure
from dualteacher.recipe import recipe_config, schedule
from dualteacher.runlog import read_log

METHODS = ["supervised", "mean_teacher", "fixmatch", "unimatch", "dual_teacher"]
VARIANTS: dict[str, tuple[str, list[str]]] = {
    **{m: (m, []) for m in METHODS},
    "dual_teacher_persistent": ("dual_teacher", ["method.restart_per_shift=false"]),
    "supervised_all": ("supervised", []),
}


def peak_memory_mb() -> float:
    """Peak memory of this process: allocated CUDA memory if a GPU trained, else peak RSS."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name() -> str:
    """The hardware a run trains on, as the table reports it."""
    return f"cuda: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu"


def run_one(job: dict) -> dict:
    """Train one run in this (fresh) process and summarise it; reuses a finished summary."""
    summary_path = Path(job["summary"])
    if summary_path.exists():
        return json.loads(summary_path.read_text())
    torch.set_num_threads(job["threads"])
    method, extra = VARIANTS[job["variant"]]
    run_dir = Path(job["run_dir"])
    cfg = recipe_config(Path(job["root"]), job["labeled"], job["unlabeled"], method, run_dir, job["iterations"],
                      job["seed"], [*schedule(job["iterations"]), *extra, *job["overrides"]])
    start = time.perf_counter()
    train(cfg, progress=False)
    evals = [r for r in read_log(run_dir) if r["type"] == "eval"]
    final = evals[-1]
    iterations = cfg.train.epochs * cfg.train.iters_per_epoch
    summary = {
        **{k: job[k] for k in ("variant", "seed", "fraction", "budget")},
        "iterations": iterations,
        "student_miou": final["student/miou"],
        "best_final_miou": max(v for k, v in final.items() if k.endswith("/miou")),
        "train_seconds": final["train_seconds"],
        "s_per_it": final["train_seconds"] / iterations,
        "total_seconds": time.perf_counter() - start,
        "peak_memory_mb": peak_memory_mb(),
        "threads": job["threads"],
        "device": device_name(),
        "overrides": job["overrides"],
        "curve": [[r["train_seconds"], r["student/miou"]] for r in evals],
    }
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = summary_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, summary_path)
    return summary


def finished_summary(job: dict) -> dict | None:
    """The summary of a finished run of ``job``, if any. An equal-wall-clock run is found whatever
    its iteration count: that count came from the speeds measured when it ran, which a later
    report (over more runs) would not reproduce exactly."""
    path = Path(job["summary"])
    if job["budget"] == "time":
        found = sorted(path.parent.glob(path.name.replace(f"_time{job['iterations']}.json", "_time*.json")))
        path = found[0] if found else path
    return json.loads(path.read_text()) if path.exists() else None


def run_all(jobs: list[dict], workers: int) -> list[dict]:
    """Run jobs ``workers`` at a time, each in a fresh spawned process; print each summary."""
    if not jobs:
        return []
    results = []
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), max_tasks_per_child=1) as pool:
        for future in as_completed([pool.submit(run_one, j) for j in jobs]):
            summary = future.result()
            print(json.dumps({k: v for k, v in summary.items() if k != "curve"}), flush=True)
            results.append(summary)
    return results


def _cell(values: Iterable[float], digits: int = 4) -> str:
    values = list(values)
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.mean(values) if values else float("nan")


def write_table(results: list[dict], fractions: list[str], variants: list[str], path: Path) -> str:
    """Markdown: for each budget one row per variant, mIoU per fraction and the costs."""
    devices = sorted({f"{r.get('device', 'cpu')}" + (f" ({' '.join(r['overrides'])})" if r.get("overrides") else "")
                      for r in results})
    lines = [f"Trained on: {'; '.join(devices)}", ""] if devices else []
    for budget, title in (("iterations", "Equal iterations"), ("time", "Equal wall-clock")):
        rows = [r for r in results if r["budget"] == budget]
        if not rows:
            continue
        lines += [f"**{title}**", "",
                  "| method | iterations | " + " | ".join(f"{f} student mIoU" for f in fractions)
                  + " | s / iteration | training time (s) | total time (s) | peak memory (MiB) |",
                  "|---|---|" + "---|" * len(fractions) + "---|---|---|---|"]
        for variant in [*variants, "supervised_all"]:
            mine = [r for r in rows if r["variant"] == variant]
            if not mine:
                continue
            its = sorted({r["iterations"] for r in mine})
            its_cell = str(its[0]) if len(its) == 1 else f"{its[0]}–{its[-1]}"
            cells = [_cell(r["student_miou"] for r in mine if r["fraction"] in (f, "all")) for f in fractions]
            costs = [f"{_mean(r['s_per_it'] for r in mine):.3f}", f"{_mean(r['train_seconds'] for r in mine):.0f}",
                     f"{_mean(r['total_seconds'] for r in mine):.0f}", f"{max(r['peak_memory_mb'] for r in mine):.0f}"]
            name = "supervised, all scenes labelled" if variant == "supervised_all" else variant
            lines.append(f"| {name} | {its_cell} | " + " | ".join(cells + costs) + " |")
        lines.append("")
    text = "\n".join(lines)
    path.write_text(text)
    return text


def _mean_curve(curves: list[list[list[float]]]) -> tuple[list[float], list[float]]:
    """Mean (training seconds, mIoU) per evaluation over runs of one schedule."""
    points = min(len(c) for c in curves)
    return [_mean(c[i][0] for c in curves) for i in range(points)], [_mean(c[i][1] for c in curves) for i in range(points)]


def write_figure(results: list[dict], fractions: list[str], variants: list[str], path: Path) -> Path:
    """Student val mIoU against training time, one panel per fraction: equal-iteration runs as
    lines (mean over seeds per evaluation), equal-wall-clock finals as stars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(fractions), figsize=(6 * len(fractions), 4.5), squeeze=False)
    for ax, fraction in zip(axes[0], fractions):
        for variant in variants:
            runs = [r for r in results if r["variant"] == variant and r["fraction"] == fraction]
            curves = [r["curve"] for r in runs if r["budget"] == "iterations"]
            if curves:
                line = ax.plot(*_mean_curve(curves), marker="o", ms=3, label=f"{variant} (seeds: {len(curves)})")[0]
                timed = [r for r in runs if r["budget"] == "time"]
                if timed:
                    ax.plot(*_mean_curve([r["curve"] for r in timed]), "--", lw=1, color=line.get_color())
                    ax.plot(_mean(r["train_seconds"] for r in timed), _mean(r["student_miou"] for r in timed), "*",
                            ms=13, color=line.get_color(), markeredgecolor="black")
        ax.set_title(f"{fraction} labelled: solid equal iterations, dashed/star equal wall-clock", fontsize=10)
        ax.set_xlabel("training wall-clock (s, evaluation excluded)")
        ax.set_ylabel("student val mIoU")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/compare"))
    parser.add_argument("--runs", type=Path, default=Path("runs/compare"))
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", nargs="+", default=["1/16", "1/8"])
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--variants", nargs="*", default=[], choices=list(VARIANTS),
                        help="extra variants, equal-iterations budget only")
    parser.add_argument("--reference", default="dual_teacher", choices=METHODS,
                        help="the equal-wall-clock budget is this method's time for --iterations")
    parser.add_argument("--budgets", nargs="+", default=["iterations", "time"], choices=["iterations", "time"])
    parser.add_argument("--upper-bound", action="store_true", help="also supervised with every train scene labelled")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (CPU threads are shared out)")
    parser.add_argument("--report-only", action="store_true", help="train nothing: tabulate the finished runs")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    args = parser.parse_args()
    if "time" in args.budgets and args.reference not in args.methods:
        parser.error("--reference must be one of --methods for the equal-wall-clock budget")

    root = ensure_digit_scenes()
    n = args.iterations
    recipe_config(root, "train", "train", "supervised", args.runs, n, 0, args.set)  # a bad --set fails here, not in a worker
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    variants = [*args.methods, *[v for v in args.variants if v not in args.methods]]

    def job(fraction: str, seed: int, variant: str, budget: str, iterations: int) -> dict:
        if fraction == "all":
            labeled, unlabeled, tag = "train", "train", "all"
        else:
            lab_path, unl_path = write_split(root, parse_labeled(fraction), seed)
            labeled, unlabeled, tag = lab_path.stem, unl_path.stem, budget_tag(parse_labeled(fraction))
        name = f"{tag}_seed{seed}_{variant}_{budget}{iterations}"
        return {"variant": variant, "seed": seed, "fraction": fraction, "budget": budget, "iterations": iterations,
                "root": str(root), "labeled": labeled, "unlabeled": unlabeled, "threads": threads,
                "overrides": args.set, "run_dir": str(args.runs / name), "summary": str(args.out / "summaries" / f"{name}.json")}

    def launch(jobs: list[dict]) -> list[dict]:
        if args.report_only:
            return [summary for summary in map(finished_summary, jobs) if summary is not None]
        return run_all(jobs, args.jobs)

    results: list[dict] = []

    def plan(seeds: list[int]) -> list[dict]:
        jobs = [job(f, seed, v, "iterations", n) for f in args.fractions for seed in seeds for v in variants]
        return jobs + ([job("all", seed, "supervised_all", "iterations", n) for seed in seeds] if args.upper_bound else [])

    def equal_wall_clock(seed: int) -> list[dict]:
        """Each method's run for the reference's training time (its speed from ``seed``'s runs), plus
        the reference's own equal-iterations run relabelled, per fraction whose reference finished."""
        speed = {v: _mean(r["s_per_it"] for r in results
                          if r["variant"] == v and r["budget"] == "iterations" and r["seed"] == seed)
                 for v in args.methods}
        timed, references = [], []
        for f in args.fractions:
            ref = next((r for r in results if r["budget"] == "iterations" and r["variant"] == args.reference
                        and r["fraction"] == f and r["seed"] == seed), None)
            if ref is None:
                continue
            timed += [job(f, seed, v, "time", max(1, round(n * speed[args.reference] / speed[v])))
                      for v in args.methods if v != args.reference]
            references.append({**ref, "budget": "time"})
        done = launch(timed)
        return references + done if done or not timed else []

    def save() -> None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        write_table(results, args.fractions, variants, args.out / "table.md")

    if "time" not in args.budgets:
        results += launch(plan(args.seeds))
    else:
        for seed in args.seeds:
            results += launch(plan([seed]))
            results += equal_wall_clock(seed)
            save()
    save()
    print(write_table(results, args.fractions, variants, args.out / "table.md"))
    print(f"figure: {write_figure(results, args.fractions, variants, args.out / 'miou_vs_time.png')}")
    tag = budget_tag(parse_labeled(args.fractions[0]))
    runs = {v: args.runs / f"{tag}_seed{args.seeds[0]}_{v}_iterations{n}" for v in variants}
    runs = {v: run for v, run in runs.items() if (run / "metrics.jsonl").exists() and _has_teachers(run)}
    if runs:
        print(f"figure: {coupling_figure(runs, args.out / 'coupling.png')}")


def _has_teachers(run_dir: Path) -> bool:
    return any(k.startswith("coupling/") for r in read_log(run_dir) for k in r)


if __name__ == "__main__":
    sys.exit(main())
