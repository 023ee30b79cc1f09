"""What the semi-supervised parts did during training, read from run directories' logs.

For each run directory (``metrics.jsonl`` as the engine writes it), over the second half of its
own iterations: the supervised loss, each unlabelled loss term as logged (unweighted), the
weighted unlabelled part of the total loss (``loss - loss_sup``) as a multiple of the
supervised loss, and the share of unlabelled pixels whose pseudo-label passes the confidence
threshold (``confident``; at the first logged iteration, half-way and at the end); over every
evaluation, the best teacher's val mIoU minus its student's (runs with teachers). These are the
checks of the README's "Checking the semi-supervised parts" table::

    python benchmarks/run_diagnostics.py runs/compare/1-32_seed*_after_warmup300
    python benchmarks/run_diagnostics.py runs/compare/1-32_seed0_* --json diagnostics.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from dualteacher.runlog import read_log


def diagnose(run_dir: Path) -> dict[str, Any]:
    """The diagnostics of one run (see the module docstring); raises FileNotFoundError without a log
    and ValueError when the log holds no training record."""
    records = read_log(run_dir)
    train = [r for r in records if r["type"] == "train" and "loss" in r and "loss_sup" in r]  # not all-skipped windows
    evals = [r for r in records if r["type"] == "eval" and "student/miou" in r]
    if not train:
        raise ValueError(f"{Path(run_dir) / 'metrics.jsonl'} holds no training record with losses")
    last = train[-1]["iteration"]
    late = [r for r in train if r["iteration"] > last / 2] or train[-1:]
    terms = sorted({k for r in late for k in r if k.startswith("loss_") and k != "loss_sup"})
    supervised = statistics.mean(r["loss_sup"] for r in late)
    unlabeled = statistics.mean(r["loss"] - r["loss_sup"] for r in late)
    marks = sorted({train[0]["iteration"], train[len(train) // 2]["iteration"], last})
    confident = {r["iteration"]: r["confident"] for r in train if r["iteration"] in marks and "confident" in r}
    teachers = sorted({k for r in evals for k in r if k.endswith("/miou") and k != "student/miou"})
    scored = [r for r in evals if any(k in r for k in teachers)]
    margin = (
        statistics.mean(max(r[k] for k in teachers if k in r) - r["student/miou"] for r in scored) if scored else None
    )
    return {
        "run": Path(run_dir).name,
        "iterations": last,
        "loss_sup": supervised,
        "terms": {k: statistics.mean(r[k] for r in late if k in r) for k in terms},
        "unlabeled_over_supervised": unlabeled / supervised if terms and supervised > 0 else None,
        "confident": confident,
        "teacher_minus_student": margin,
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The diagnostics as a markdown table, one row per run."""
    lines = [
        "| run | supervised loss | unlabelled terms (unweighted) | unlabelled ÷ supervised (weighted) "
        "| confident share (iteration: share) | best teacher − student val mIoU |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        terms = ", ".join(f"{k[5:]} {v:.3f}" for k, v in row["terms"].items()) or "–"
        ratio = "–" if row["unlabeled_over_supervised"] is None else f"{row['unlabeled_over_supervised']:.1f}×"
        confident = ", ".join(f"{i}: {c:.2f}" for i, c in row["confident"].items()) or "–"
        margin = "–" if row["teacher_minus_student"] is None else f"{row['teacher_minus_student']:+.3f}"
        lines.append(f"| {row['run']} | {row['loss_sup']:.3f} | {terms} | {ratio} | {confident} | {margin} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (each with its metrics.jsonl)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = [diagnose(run) for run in args.runs]
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
