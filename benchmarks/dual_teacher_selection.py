"""Choosing a Dual Teacher default on scenes disjoint from the ones the comparison reports.

The comparison, the ablation and the length study score val mIoU on the digit scenes' 500 *val*
scenes. A default picked from those numbers would be tuned on the evaluation data, which no other
method got. This study makes its own selection split instead: it holds out
:data:`SELECTION_SCENES` of the 3,000 *train* scenes (drawn once with :data:`SELECTION_SEED`) as
its val split, labels 1/32 and 1/16 of the other 2,500 with seeds 0-2, and trains Dual Teacher
with the paper's settings and each candidate setting through ``dualteacher compare`` with the
comparison's protocol (300 supervised warm-up iterations, then 700). The dataset itself is read,
never written: the selection's split lists live in ``OUT/splits``.

The rule, fixed before any run (:data:`RULE`): a candidate replaces the paper's setting as the
default only if its mean student mIoU on the selection split is higher than the paper's setting
at **every** labelled fraction. Its number on the reported val scenes then comes from the
comparison's own runs, not from these.

Example (the default candidate, the student at full depth; then the decision from what finished)::

    python benchmarks/dual_teacher_selection.py run --jobs 2
    python benchmarks/dual_teacher_selection.py decision

Summaries go to ``benchmarks/results/dual_teacher_selection``, run directories to
``runs/dual_teacher_selection``. Any further ``dualteacher compare`` option follows ``run``
(``--seeds``, ``--labeled``, ``--variants`` for other candidates, ``--methods dual_teacher
mean_teacher`` to add Mean Teacher, ``key=value``; a later one replaces the study's own);
``decision`` takes the same ``--labeled`` and ``--seeds`` when they differ from the study's;
``--data`` runs it on another folder-layout dataset.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dualteacher.cli import main as dualteacher
from dualteacher.data.digits import ensure_digit_scenes
from dualteacher.data.registry import open_source
from dualteacher.data.split_files import write_id_list

RESULTS = Path("benchmarks/results/dual_teacher_selection")
SELECTION_SCENES = 500
"""Train scenes held out as the selection split's val (as many as the reported val split has)."""
SELECTION_SEED = 2026
"""Seed of the one draw of the held-out scenes; not one of the training seeds 0-2."""
REFERENCE = "dual_teacher"
"""The paper's settings, which a candidate must beat."""
CANDIDATES = ("dual_teacher+student_drop_path=0",)
"""The default candidates: the student at full depth (the ablation's largest effect, on val)."""
RULE = (
    "a candidate becomes the default only if its mean student mIoU on the selection split (over the "
    "planned seeds) is higher than the paper's settings at every labelled fraction, by any margin; if "
    "several pass, the one with the higher mean over the fractions"
)
FRACTIONS = ("1/32", "1/16")
SEEDS = (0, 1, 2)
COMMON = ["--labeled", *FRACTIONS, "--seeds", *map(str, SEEDS), "--budget", "iterations", "--warmup", "300"]


def write_selection_splits(data: Path, splits: Path, held_out: int = SELECTION_SCENES) -> tuple[int, int]:
    """Write ``splits/train.txt`` (the train ids not held out) and ``splits/val.txt`` (``held_out``
    of them, drawn with :data:`SELECTION_SEED`) for the folder dataset ``data``; return their sizes. Lists already there are kept if they are this draw (so split
    lists compare writes beside them stay valid); :class:`ValueError` if they differ or if the
    train split has too few ids."""
    ids = open_source("folder", data).split_ids("train")
    if not 0 < held_out <= len(ids) // 2:
        raise ValueError(f"{data}: cannot hold out {held_out} of the train split's {len(ids)} ids (at most half)")
    chosen = set(random.Random(SELECTION_SEED).sample(sorted(ids), held_out))
    lists = {"train": [i for i in ids if i not in chosen], "val": [i for i in ids if i in chosen]}
    splits.mkdir(parents=True, exist_ok=True)
    for name, wanted in lists.items():
        path = splits / f"{name}.txt"
        if path.exists():
            if path.read_text().split() != wanted:
                raise ValueError(f"{path} is not this study's draw of {data}: remove {splits} to write it again")
        else:
            write_id_list(path, wanted)
    return len(lists["train"]), len(lists["val"])


def _planned_mean(cell: dict[str, Any], planned: set[str]) -> float:
    """Mean mIoU of a summary cell over the ``planned`` seeds only, so that both sides of a verdict
    average the same seeds whatever else finished."""
    return sum(cell["seeds"][s] for s in sorted(planned)) / len(planned)


def decision(summary: dict[str, Any], fractions: Sequence[str] = FRACTIONS, seeds: Sequence[int] = SEEDS) -> str:
    """The markdown table of every setting against :data:`REFERENCE` per planned fraction (mean,
    per-seed mIoU, difference, seeds won) and each candidate's verdict under :data:`RULE`, from
    compare's ``summary.json``. Only Dual Teacher variants get a verdict, which needs every planned
    fraction and seed of both and compares their means over the planned seeds."""
    methods = summary["methods"]
    if REFERENCE not in methods:
        raise ValueError(f"no finished {REFERENCE} run in the summary: run the study first")
    planned = {str(seed) for seed in seeds}
    lines = [
        "| setting | " + " | ".join(f"{f}: mean (per seed)" for f in fractions) + " |",
        "|---" * (len(fractions) + 1) + "|",
    ]
    verdicts = []
    reference = methods[REFERENCE]
    for name, cells in methods.items():
        row = []
        for fraction in fractions:
            cell, ref = cells.get(fraction), reference.get(fraction)
            if cell is None:
                row.append("–")
                continue
            per_seed = ", ".join(f"{cell['seeds'][s]:.3f}" for s in sorted(cell["seeds"]))
            text = f"{cell['mean']:.3f} ({per_seed})"
            if name != REFERENCE and ref is not None:
                common = sorted(set(cell["seeds"]) & set(ref["seeds"]))
                won = sum(cell["seeds"][s] > ref["seeds"][s] for s in common)
                text += f", {100 * (cell['mean'] - ref['mean']):+.1f}, wins {won}/{len(common)}"
            row.append(text)
        lines.append(f"| {name} | " + " | ".join(row) + " |")
        if not name.startswith(f"{REFERENCE}+"):
            continue
        complete = all(
            fraction in c and set(c[fraction]["seeds"]) >= planned for c in (cells, reference) for fraction in fractions
        )
        better = complete and all(
            _planned_mean(cells[f], planned) > _planned_mean(reference[f], planned) for f in fractions
        )
        verdict = "not all planned runs finished" if not complete else "passes" if better else "fails"
        verdicts.append(f"- {name}: **{verdict}**")
    planned_text = f"planned: {', '.join(fractions)} labelled, seeds {', '.join(map(str, seeds))}"
    return "\n".join([*lines, "", f"The rule: {RULE} ({planned_text}).", "", *verdicts]) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``run``: the selection splits, then ``dualteacher compare`` (its exit status); ``decision``:
    print and write ``OUT/decision.md`` from ``OUT/summary.json``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("run", "decision"))
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    parser.add_argument("--data", type=Path, default=None, help="default: the built-in digit scenes")
    parser.add_argument("--held-out", type=int, default=SELECTION_SCENES, help="train scenes held out as val")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.part == "decision":
        import json

        plan = argparse.ArgumentParser(prog="decision")
        plan.add_argument("--labeled", nargs="+", default=list(FRACTIONS))
        plan.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
        planned = plan.parse_args(rest)
        text = decision(json.loads((args.out / "summary.json").read_text()), planned.labeled, planned.seeds)
        (args.out / "decision.md").write_text(text)
        print(text)
        return 0
    data = args.data or ensure_digit_scenes()
    splits = args.out / "splits"
    train, val = write_selection_splits(data, splits, args.held_out)
    print(f"selection split of {data}: {train} train and {val} held-out train scenes as val ({splits})")
    return dualteacher(
        [
            "compare",
            "--data",
            str(data),
            "--splits-dir",
            str(splits),
            *COMMON,
            "--methods",
            REFERENCE,
            "--variants",
            *CANDIDATES,
            "--out",
            str(args.out),
            "--runs",
            "runs/dual_teacher_selection",
            *rest,
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
