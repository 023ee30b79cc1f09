"""What a comparison writes beside the per-run summaries: ``summary.json``, ``table.md`` and the
figures (:mod:`dualteacher.experiments.plots`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dualteacher.experiments.compare.grid import Plan
from dualteacher.experiments.compare.summary import summarize, with_reference_timed
from dualteacher.experiments.compare.table import write_table
from dualteacher.experiments.plots import coupling_figure, miou_vs_time_figure
from dualteacher.runlog import read_log


def write_outputs(results: list[dict], plan: Plan, *, figures: bool) -> dict[str, Any]:
    """Write ``summary.json`` and ``table.md`` (and, with ``figures``, the figures); return the summary."""
    out = plan.opts.out
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results, plan)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, out / "summary.json")
    write_table(summary, plan.opts.fractions, out / "table.md")
    if figures and results:
        upper = summary["upper_bound"]["mean"] if summary["upper_bound"] else None
        miou_vs_time_figure(
            with_reference_timed(results, plan), plan.opts.fractions, plan.variants, upper, out / "miou_vs_time.png"
        )
        first = [
            r
            for r in results
            if r["budget"] == "iterations"
            and r["fraction"] == plan.opts.fractions[0]
            and r["seed"] == plan.opts.seeds[0]
        ]
        runs = {r["variant"]: plan.runs_dir / r["name"] for r in first}
        runs = {v: d for v, d in runs.items() if (d / "metrics.jsonl").exists() and _has_teachers(d)}
        if runs:
            coupling_figure(runs, out / "coupling.png")
    return summary


def _has_teachers(run_dir: Path) -> bool:
    return any(k.startswith("coupling/") for r in read_log(run_dir) for k in r)
