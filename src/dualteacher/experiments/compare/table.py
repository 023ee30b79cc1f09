"""Tabulating a comparison: ``table.md``, one markdown table per budget kind."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dualteacher.experiments.recipe import BASELINE


def _table_row(name: str, fraction: str, cell: dict[str, Any], supervised: bool) -> str:
    """One markdown row; costs are means over the seeds' ``per_seed`` detail, memory their maximum."""
    seeds = list(cell["per_seed"].values())
    its = sorted({s["iterations"] for s in seeds})
    miou = f"{cell['mean']:.4f}" + (f" ± {cell['std']:.4f}" if cell["std"] is not None else " (1 seed)")
    reached = (
        "–"
        if not supervised
        else "no supervised run"
        if any(s.get("target", 0) is None for s in seeds)
        else "never"
        if cell["time_to_accuracy"] is None
        else f"{cell['time_to_accuracy']:.0f}"
    )
    return (
        f"| {name} | {fraction} | {miou} | {len(seeds)} | {its[0] if len(its) == 1 else f'{its[0]}–{its[-1]}'} "
        f"| {statistics.mean(s['s_per_iteration'] for s in seeds):.3f} "
        f"| {statistics.mean(s['train_seconds'] for s in seeds):.0f} "
        f"| {max(s['peak_memory_mb'] for s in seeds):.0f} | {reached} |"
    )


def write_table(summary: dict[str, Any], fractions: Sequence[str], path: Path) -> str:
    """``table.md``: per budget, one row per method and fraction (mean ± std over seeds, cost,
    time to supervised's mIoU), and the upper bound."""
    budget = summary["budget"]
    lines = [
        f"Trained on: {'; '.join(budget['devices']) or '–'}, {' or '.join(map(str, budget['threads_per_run']))} thread(s) per run. "
        f"Recipe: {'; '.join(summary['recipe']['account'])}",
        "",
    ]
    header = [
        "| method | labelled | student mIoU (mean ± std) | seeds | iterations | s / iteration | training time (s) "
        "| peak memory (MiB) | time to supervised's mIoU (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    warm = (
        (
            f", each after a supervised warm-up of {budget['warmup']} iterations (counted in every time and "
            "iteration count; the upper bound trains as long from the pretrained encoder)"
        )
        if budget.get("warmup")
        else ""
    )
    titles = {
        "iterations": f"**Equal iterations** ({budget['iterations']}{warm})",
        "time": f"**Equal wall-clock** ({budget['reference']}'s training time for {budget['iterations']} "
        f"iterations{warm})",
    }
    for kind in budget["budgets"]:
        rows = []
        for method, cells in summary["methods"].items():
            for fraction in fractions:
                cell = cells.get(fraction, {})
                cell = cell.get("equal_time") if kind == "time" else (cell if "mean" in cell else None)
                if cell:
                    has_target = fraction in summary["methods"].get(BASELINE, {})
                    rows.append(_table_row(method, fraction, cell, has_target))
        if kind == "iterations" and summary["upper_bound"]:
            rows.append(_table_row("supervised, all train images labelled", "all", summary["upper_bound"], False))
        if rows:
            lines += [titles[kind], "", *header, *rows, ""]
    text = "\n".join(lines)
    path.write_text(text)
    return text
