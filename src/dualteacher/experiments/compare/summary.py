"""Summarising a comparison: per method, label budget and budget kind, the mean and spread of
the final student mIoU over seeds, the costs, and the time to reach supervised training's mIoU
(the schema of ``summary.json`` is in :func:`summarize`)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from dualteacher.experiments.budgets import BUDGETS
from dualteacher.experiments.compare.grid import Plan
from dualteacher.experiments.compare.options import variant_of
from dualteacher.experiments.recipe import BASELINE, RECIPE, UPPER_BOUND, method_settings

TOLERANCE = 1e-9


def time_to_accuracy(curve: Sequence[Sequence[float]], target: float) -> float | None:
    """Training seconds of the first point of ``curve`` ([[seconds, mIoU], ...]) whose mIoU
    reaches ``target`` (within 1e-9); None if none does. Resolution: the evaluation interval."""
    return next((float(seconds) for seconds, miou in curve if miou >= target - TOLERANCE), None)


def _seed_stats(runs: list[dict], targets: dict[int, float] | None) -> dict[str, Any]:
    """mean, std (None for one seed), final mIoU and detail per seed; with ``targets`` (seed ->
    supervised's final mIoU on that seed's split), each seed's time to reach its own target."""
    runs = sorted(runs, key=lambda r: r["seed"])
    finals = [r["student_miou"] for r in runs]

    def target(run: dict) -> float | None:
        return None if targets is None else targets.get(run["seed"])

    def reached(run: dict) -> float | None:
        goal = target(run)
        return None if goal is None else time_to_accuracy(run["curve"], goal)

    return {
        "mean": statistics.mean(finals),
        "std": statistics.stdev(finals) if len(finals) > 1 else None,
        "seeds": {str(r["seed"]): r["student_miou"] for r in runs},
        "per_seed": {
            str(r["seed"]): {
                "iterations": r["iterations"],
                "train_seconds": r["train_seconds"],
                "s_per_iteration": r["s_per_it"],
                "peak_memory_mb": r["peak_memory_mb"],
                "time_to_accuracy": reached(r),
                "target": target(r),
            }
            for r in runs
        },
    }


def _cell(runs: list[dict], targets: dict[int, float]) -> dict[str, Any]:
    """One method at one fraction under one budget (see :func:`summarize`); ``targets``: seed ->
    supervised's final mIoU on that seed's split."""
    stats = _seed_stats(runs, targets)
    reached = [seed["time_to_accuracy"] for seed in stats["per_seed"].values()]
    return {
        **{k: stats[k] for k in ("mean", "std", "seeds")},
        "s_per_iteration": statistics.mean(r["s_per_it"] for r in runs),
        "train_seconds": statistics.mean(r["train_seconds"] for r in runs),
        "time_to_accuracy": None if None in reached else statistics.mean(reached),
        "per_seed": stats["per_seed"],
    }


def _budget_cells(runs: list[dict], variants: Sequence[str], fractions: Sequence[str]) -> dict[str, dict[str, Any]]:
    """variant -> fraction -> cell for the runs of one budget; targets from the baseline's (supervised) runs."""

    def mine(variant: str, fraction: str) -> list[dict]:
        return [r for r in runs if r["variant"] == variant and r["fraction"] == fraction]

    targets = {f: {r["seed"]: r["student_miou"] for r in mine(BASELINE, f)} for f in fractions}
    return {v: {f: _cell(mine(v, f), targets[f]) for f in fractions if mine(v, f)} for v in variants}


def with_reference_timed(results: list[dict], plan: Plan) -> list[dict]:
    """``results`` plus, under the ``time`` budget, the reference's equal-iteration runs as its
    equal-wall-clock runs (its time is the budget)."""
    if "time" not in plan.opts.budgets:
        return results
    reference = [
        {**r, "budget": "time"} for r in results if r["budget"] == "iterations" and r["variant"] == plan.opts.reference
    ]
    return results + reference


def summarize(results: list[dict], plan: Plan) -> dict[str, Any]:
    """``summary.json`` from the per-run summaries.

    ``{"upper_bound": null | {"mean", "std", "seeds": {seed: mIoU}, "per_seed"}, "methods":
    {method: {fraction: {"mean", "std", "seeds": {seed: mIoU}, "s_per_iteration",
    "train_seconds", "time_to_accuracy", "per_seed", ["equal_time": {the same keys}]}}},
    "budget", "recipe"}``: equal-iteration results; with the ``time`` budget each method's cell
    also holds its equal-wall-clock result under ``"equal_time"``. mIoU is the final student's;
    ``std`` is the sample standard deviation over seeds (null for one seed);
    ``time_to_accuracy`` is, per seed, the training time at which the method first reaches the
    final mIoU of supervised training on the same fraction, budget and seed (its own labelled
    split), and for the cell the mean over its seeds (null when any seed never reaches it or has
    no supervised run); ``per_seed`` holds iterations, training seconds, s/it, peak memory,
    time-to-accuracy and its ``target`` (None: no supervised run on that seed) per seed.
    """
    opts = plan.opts
    every = with_reference_timed(results, plan)
    by_budget = {b: [r for r in every if r["budget"] == b] for b in BUDGETS}
    methods = _budget_cells(by_budget["iterations"], plan.variants, opts.fractions)
    if "time" in opts.budgets:
        timed = _budget_cells(by_budget["time"], opts.methods, opts.fractions)
        for variant, cells in timed.items():
            for fraction, cell in cells.items():
                methods[variant][fraction]["equal_time"] = cell
    upper = [r for r in by_budget["iterations"] if r["variant"] == UPPER_BOUND]
    return {
        "upper_bound": _seed_stats(upper, None) if upper else None,
        "methods": methods,
        "budget": {
            "budgets": ["iterations", *(["time"] if "time" in opts.budgets else [])],
            "iterations": plan.iterations,
            "warmup": opts.warmup,
            "minutes": opts.minutes,
            "probe": plan.probe,
            "reference": opts.reference,
            "threads_per_run": sorted({r["threads"] for r in results if "threads" in r}) or [plan.threads],
            "devices": sorted({r["device"] for r in results}),
        },
        "recipe": {
            "settings": RECIPE,
            "method_settings": {v: [*method_settings(variant_of(v)[0]), *variant_of(v)[1]] for v in plan.variants},
            "adapted": plan.adaptation.overrides,
            "account": plan.adaptation.account,
            "overrides": opts.overrides,
        },
    }
