"""Dual Teacher at the length it was made for: the long-schedule and shift-length study.

Two parts, both ``dualteacher compare`` on the built-in digit scenes at 1/32, seeds 0-2, the
warm-start protocol (300 supervised warm-up iterations; the recipe's 50-iteration epochs, evaluated
every second one: every 100 iterations), resumable from the committed per-run summaries:

``length``  supervised, Mean Teacher and Dual Teacher (the paper's settings, the recipe's
            50-iteration shifts) trained to 3x the recipe: 300 + 2,700 iterations, evaluated every
            100, so the curves show whether Dual Teacher's deficit shrinks, holds or grows.
``shift``   Dual Teacher at the recipe's length (300 + 700) with shifts of one labelled pass
            (11 iterations for 94 scenes at batch 8), 50 (the recipe's, in the committed
            comparison), 150 and 350 iterations.

Example (one part, one seed, then the table from what is finished)::

    python benchmarks/dual_teacher_length.py shift --seeds 0
    python benchmarks/dual_teacher_length.py shift --report-only

``reading`` draws the length part's curves from its committed summaries (no training):
``length/curves.png`` (student val mIoU, seed mean and each seed, against iterations and against
training time after the warm-up) and ``length/reading.md`` (final mIoU per seed, the Dual Teacher
minus Mean Teacher gap at each third of the schedule, and the time each method needs to reach the
other's final mIoU); with the default ``--out`` it also writes ``shift/reading.md`` (final mIoU
per shift length and seed, the mean of the last three evaluations, the difference to the
recipe's 50-iteration shifts, and Dual Teacher minus Mean Teacher where Mean Teacher ran into the
shift folder from the same warm-ups: ``dualteacher compare`` with this script's ``COMMON``
options, ``--methods mean_teacher --out benchmarks/results/dual_teacher_length/shift``)::

    python benchmarks/dual_teacher_length.py reading

Summaries go to ``benchmarks/results/dual_teacher_length/<part>``, run directories to
``runs/dual_teacher_length`` (shared by both parts, so they share their warm-ups). Any further
``dualteacher compare`` option (``--seeds``, ``--jobs``, ``--report-only``, ``key=value``; a
later one wins over the part's own) follows the part's name; ``--data`` runs it on other data.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from dualteacher.cli import main as dualteacher
from dualteacher.data.digits import ensure_digit_scenes
from dualteacher.experiments.compare.summary import time_to_accuracy

SHIFTS = ("labeled_pass", "150", "350")
"""Shift lengths beside the recipe's 50 (``dual_teacher`` itself)."""
PARTS: dict[str, list[str]] = {
    "length": ["--methods", "supervised", "mean_teacher", "dual_teacher", "--iterations", "2700"],
    "shift": ["--methods", "dual_teacher", "--variants", *(f"dual_teacher+shift={s}" for s in SHIFTS)],
}
COMMON = ["--labeled", "1/32", "--budget", "iterations", "--warmup", "300", "--runs", "runs/dual_teacher_length"]
RESULTS = Path("benchmarks/results/dual_teacher_length")
EVAL_EVERY = 100
"""Iterations between evaluations in the length part (the recipe's 50-iteration epochs, ``train.eval_every=2``)."""
LAST = 5
"""Evaluations averaged for the steadier end-of-run score (the last 500 iterations)."""
LENGTH_METHODS = ("supervised", "mean_teacher", "dual_teacher")
SHIFT_LAST = 3
"""Evaluations averaged in the shift part's steadier score (iterations 800-1,000 of 1,000)."""
SHIFT_ROWS = {
    "dual_teacher+shift=labeled_pass": "one labelled pass (11)",
    "dual_teacher": "50 (the recipe's)",
    "dual_teacher+shift=150": "150",
    "dual_teacher+shift=350": "350",
}
"""The shift part's variants, shortest shift first, with the length each stands for."""


def length_runs(summaries: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """method -> seed -> the finished length-part run's summary (warm-ups left out), each with
    ``its``: the iteration of each point of its ``curve`` (one evaluation every :data:`EVAL_EVERY`
    iterations, the warm-up's included). Raises ValueError for a curve of another cadence."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted(summaries.glob("*.json")):
        run = json.loads(path.read_text())
        if run["budget"] != "iterations":
            continue
        if len(run["curve"]) * EVAL_EVERY != run["iterations"]:
            raise ValueError(
                f"{path}: {len(run['curve'])} evaluations for {run['iterations']} iterations, "
                f"not one every {EVAL_EVERY}"
            )
        run["its"] = [EVAL_EVERY * (i + 1) for i in range(len(run["curve"]))]
        runs.setdefault(run["variant"], {})[run["seed"]] = run
    return runs


def _finished(
    out: Path, variants: tuple[str, ...], part: str
) -> tuple[dict[str, dict[int, dict[str, Any]]], list[str]]:
    """The finished runs in ``out/summaries`` (:func:`length_runs`) and which of ``variants`` they
    hold, in that order; FileNotFoundError naming the ``part`` to run if they hold none."""
    runs = length_runs(out / "summaries")
    present = [v for v in variants if v in runs]
    if not present:
        raise FileNotFoundError(
            f"no finished run of {', '.join(variants)} in {out / 'summaries'}: run it first "
            f"(python benchmarks/dual_teacher_length.py {part})"
        )
    return runs, present


def _last(run: dict[str, Any], last: int = LAST) -> float:
    """Mean student mIoU of the run's ``last`` evaluations: steadier than the final one, which
    moves by a few points between neighbouring evaluations on this benchmark."""
    return statistics.mean(m for _, m in run["curve"][-last:])


def _after_warmup(run: dict[str, Any]) -> list[tuple[float, float]]:
    """The run's curve from the end of its warm-up on, in training seconds after the warm-up."""
    start = run.get("warmup", {}).get("train_seconds", 0.0)
    skip = run.get("warmup", {}).get("iterations", 0) // EVAL_EVERY
    return [(t - start, m) for t, m in run["curve"][skip:]]


def reading(out: Path) -> str:
    """Write ``out/curves.png`` and ``out/reading.md`` from ``out/summaries``; return the markdown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dualteacher.experiments.plots import mean_curve

    runs, methods = _finished(out, LENGTH_METHODS, "length")
    fig, (by_its, by_time) = plt.subplots(1, 2, figsize=(12, 4.5))
    for method in methods:
        seeds = runs[method]
        line = by_its.plot(
            seeds[min(seeds)]["its"],
            [statistics.mean(m) for m in zip(*([m for _, m in r["curve"]] for r in seeds.values()))],
            lw=2,
            label=f"{method} (seeds: {len(seeds)})",
        )[0]
        for run in seeds.values():
            by_its.plot(run["its"], [m for _, m in run["curve"]], lw=0.6, alpha=0.5, color=line.get_color())
            by_time.plot(*zip(*_after_warmup(run)), lw=0.6, alpha=0.5, color=line.get_color())
        by_time.plot(
            *zip(*mean_curve([_after_warmup(r) for r in seeds.values()])), lw=2, color=line.get_color(), label=method
        )
    warmup = next(iter(next(iter(runs.values())).values())).get("warmup", {}).get("iterations", 0) if runs else 0
    by_its.axvline(warmup, color="grey", ls=":", lw=1)
    by_its.set_xlabel(f"iteration (evaluated every {EVAL_EVERY}; dotted: end of the supervised warm-up)")
    by_time.set_xlabel("training seconds after the warm-up (evaluation excluded)")
    for ax in (by_its, by_time):
        ax.set_ylabel("student val mIoU")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("1/32 labelled, built-in digit scenes: thick = seed mean, thin = each seed", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)
    text = _reading_table(runs, methods)
    (out / "reading.md").write_text(text)
    return text


def shift_reading(out: Path) -> str:
    """Write ``out/reading.md`` from the shift part's ``out/summaries``: per shift length, the
    student's final val mIoU on each seed, the seed mean, the mean of the last
    :data:`SHIFT_LAST` evaluations and the difference to the recipe's 50-iteration shifts on the
    seeds both finished; and, for seeds where Mean Teacher also ran into this folder (same
    warm-ups, length and thread count), Dual Teacher's 50-iteration shifts minus Mean Teacher.
    Return the markdown; FileNotFoundError if nothing finished."""
    runs, rows = _finished(out, tuple(SHIFT_ROWS), "shift")
    seeds = sorted({seed for v in rows for seed in runs[v]})
    lines = [
        "| shift, iterations | "
        + " | ".join(f"seed {s}" for s in seeds)
        + f" | seeds | mean | mean of the last {SHIFT_LAST} evaluations | minus 50-iteration shifts (seeds) |",
        "|---" * (len(seeds) + 5) + "|",
    ]
    reference = runs.get("dual_teacher", {})
    for variant in rows:
        done = runs[variant]
        cells = [f"{done[s]['student_miou']:.4f}" if s in done else "–" for s in seeds]
        finals = [r["student_miou"] for r in done.values()]
        lasts = [_last(r, SHIFT_LAST) for r in done.values()]
        paired = [s for s in done if s in reference]
        gap = (
            f"{statistics.mean(done[s]['student_miou'] - reference[s]['student_miou'] for s in paired):+.4f} "
            f"({len(paired)})"
            if paired and variant != "dual_teacher"
            else ""
        )
        lines.append(
            f"| {SHIFT_ROWS[variant]} | {' | '.join(cells)} | {len(finals)} | {statistics.mean(finals):.4f} | "
            f"{statistics.mean(lasts):.4f} | {gap} |"
        )
    mean_teacher = runs.get("mean_teacher", {})
    paired = [s for s in sorted(mean_teacher) if s in reference]
    if paired:
        gaps = [reference[s]["student_miou"] - mean_teacher[s]["student_miou"] for s in paired]
        lines += [
            "",
            "Mean Teacher from the same warm-ups, at the same length and thread count, against the "
            "50-iteration shifts (final student mIoU):",
            "",
            "| seed | Mean Teacher | Dual Teacher, 50-iteration shifts | Dual Teacher minus Mean Teacher |",
            "|---|---|---|---|",
            *(
                f"| {s} | {mean_teacher[s]['student_miou']:.4f} | {reference[s]['student_miou']:.4f} | {g:+.4f} |"
                for s, g in zip(paired, gaps, strict=True)
            ),
            f"| mean | | | {statistics.mean(gaps):+.4f} |",
        ]
    text = "\n".join(lines) + "\n"
    (out / "reading.md").write_text(text)
    return text


def _reading_table(runs: dict[str, dict[int, dict[str, Any]]], methods: list[str]) -> str:
    """The markdown of :func:`reading`: finals, the gap at each third, time to the other's final."""
    lines = [
        "| method | seed | final student mIoU | mean of the last "
        f"{LAST} evaluations | iterations | s / iteration | training s after warm-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        for seed, run in sorted(runs[method].items()):
            own = run["train_seconds"] - run.get("warmup", {}).get("train_seconds", 0.0)
            lines.append(
                f"| {method} | {seed} | {run['student_miou']:.4f} | {_last(run):.4f} | {run['iterations']} | "
                f"{run['s_per_it']:.3f} | {own:.0f} |"
            )
        finals = [r["student_miou"] for r in runs[method].values()]
        lasts = [_last(r) for r in runs[method].values()]
        spread = f" ± {statistics.stdev(finals):.4f}" if len(finals) > 1 else ""
        lines.append(
            f"| {method} | mean | {statistics.mean(finals):.4f}{spread} | {statistics.mean(lasts):.4f} | | | |"
        )
    pair = [m for m in ("dual_teacher", "mean_teacher") if m in runs]
    if len(pair) == 2:
        dual, mean = runs["dual_teacher"], runs["mean_teacher"]
        seeds = sorted(set(dual) & set(mean))
        marks = sorted({its for s in seeds for its in dual[s]["its"] if its % 1000 == 0})
        lines += [
            "",
            "Dual Teacher minus Mean Teacher, student val mIoU at the same iteration (same seed):",
            "",
            "| seed | " + " | ".join(f"iteration {i}" for i in marks) + " |",
            "|---" * (len(marks) + 1) + "|",
        ]
        gaps = {}
        for seed in seeds:
            at = {m: {i: c[1] for i, c in zip(runs[m][seed]["its"], runs[m][seed]["curve"])} for m in pair}
            gaps[seed] = [at["dual_teacher"][i] - at["mean_teacher"][i] for i in marks]
            lines.append(f"| {seed} | " + " | ".join(f"{g:+.4f}" for g in gaps[seed]) + " |")
        if len(seeds) > 1:
            means = [statistics.mean(column) for column in zip(*gaps.values())]
            lines.append("| mean | " + " | ".join(f"{g:+.4f}" for g in means) + " |")
        lines += [
            "",
            "Training seconds after the warm-up to first reach the other method's final student mIoU "
            "(evaluated every 100 iterations; never: not within the run):",
            "",
            "| seed | Dual Teacher to Mean Teacher's final | Mean Teacher to Dual Teacher's final |",
            "|---|---|---|",
        ]
        for seed in seeds:
            cells = []
            for runner, target in ((dual[seed], mean[seed]), (mean[seed], dual[seed])):
                reached = time_to_accuracy(_after_warmup(runner), target["student_miou"])
                cells.append("never" if reached is None else f"{reached:.0f}")
            lines.append(f"| {seed} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run one part; its exit status (that of ``dualteacher compare``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=(*PARTS, "reading"))
    parser.add_argument("--out", default=None, help="default: benchmarks/results/dual_teacher_length/<part>")
    parser.add_argument("--data", default=None, help="default: the built-in digit scenes")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.part == "reading":
        print(reading(Path(args.out) if args.out else RESULTS / "length"))
        if args.out is None and (RESULTS / "shift" / "summaries").is_dir():
            try:
                print(shift_reading(RESULTS / "shift"))
            except FileNotFoundError as error:  # only warm-ups finished so far
                print(error, file=sys.stderr)
        return 0
    out = args.out or str(RESULTS / args.part)
    data = args.data or str(ensure_digit_scenes())
    return dualteacher(["compare", "--data", data, *COMMON, *PARTS[args.part], "--out", out, *rest])


if __name__ == "__main__":
    sys.exit(main())
