"""Dual Teacher at the length it was made for: the long-schedule and shift-length study.

Two parts, both ``dualteacher compare`` on the built-in digit scenes at 1/32, seeds 0-2, the
warm-start protocol (300 supervised warm-up iterations, the recipe's 50-iteration evaluation
cadence), resumable from the committed per-run summaries:

``length``  supervised, Mean Teacher and Dual Teacher (the paper's settings, the recipe's
            50-iteration shifts) trained to 3x the recipe: 300 + 2,700 iterations, evaluated every
            100, so the curves show whether Dual Teacher's deficit shrinks, holds or grows.
``shift``   Dual Teacher at the recipe's length (300 + 700) with shifts of one labelled pass
            (11 iterations for 94 scenes at batch 8), 50 (the recipe's, in the committed
            comparison), 150 and 350 iterations.

Example (one part, one seed, then the table from what is finished)::

    python benchmarks/dual_teacher_length.py shift --seeds 0
    python benchmarks/dual_teacher_length.py shift --report-only

Summaries go to ``benchmarks/results/dual_teacher_length/<part>``, run directories to
``runs/dual_teacher_length`` (shared by both parts, so they share their warm-ups). Any further
``dualteacher compare`` option (``--seeds``, ``--jobs``, ``--report-only``, ``key=value``; a
later one wins over the part's own) follows the part's name; ``--data`` runs it on other data.
"""

from __future__ import annotations

import argparse
import sys

from dualteacher.cli import main as dualteacher
from dualteacher.data.digits import ensure_digit_scenes

SHIFTS = ("labeled_pass", "150", "350")
"""Shift lengths beside the recipe's 50 (``dual_teacher`` itself)."""
PARTS: dict[str, list[str]] = {
    "length": ["--methods", "supervised", "mean_teacher", "dual_teacher", "--iterations", "2700"],
    "shift": ["--methods", "dual_teacher", "--variants", *(f"dual_teacher+shift={s}" for s in SHIFTS)],
}
COMMON = ["--labeled", "1/32", "--budget", "iterations", "--warmup", "300", "--runs", "runs/dual_teacher_length"]


def main(argv: list[str] | None = None) -> int:
    """Run one part; its exit status (that of ``dualteacher compare``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=tuple(PARTS))
    parser.add_argument("--out", default=None, help="default: benchmarks/results/dual_teacher_length/<part>")
    parser.add_argument("--data", default=None, help="default: the built-in digit scenes")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    out = args.out or f"benchmarks/results/dual_teacher_length/{args.part}"
    data = args.data or str(ensure_digit_scenes())
    return dualteacher(["compare", "--data", data, *COMMON, *PARTS[args.part], "--out", out, *rest])


if __name__ == "__main__":
    sys.exit(main())
