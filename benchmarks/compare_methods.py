"""Method comparison on the built-in digit scenes: ``dualteacher compare`` with this benchmark's defaults.

Builds the digit scenes (or finds them in the cache), then runs ``dualteacher compare`` on them
with the defaults below; any option of ``dualteacher compare`` given here replaces its default,
and ``key=value`` overrides go last. For example (the committed CPU grid)::

    python benchmarks/compare_methods.py --methods supervised mean_teacher dual_teacher --budget iterations --upper-bound

``--data DIR`` compares on another folder-layout dataset instead of the digit scenes (which are
then not built; the tests give it tiny generated scenes). Defaults: ``--labeled 1/32 1/16
--budget iterations time --out benchmarks/results/compare --runs runs/compare`` (run directories
and checkpoints stay out of the repository), and ``dualteacher compare``'s own: every method,
seeds 0 1 2, one job, and the protocol's supervised warm-up of 300 of the recipe's 1,000
iterations (700 after it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dualteacher.cli import main as dualteacher
from dualteacher.data.digits import ensure_digit_scenes

DEFAULTS = [
    "--labeled",
    "1/32",
    "1/16",
    "--budget",
    "iterations",
    "time",
    "--out",
    "benchmarks/results/compare",
    "--runs",
    "runs/compare",
]


def main(argv: list[str] | None = None) -> int:
    """``dualteacher compare --data <digit scenes> DEFAULTS argv``; its exit status. A ``--data``
    in ``argv`` replaces the digit scenes (not built then)."""
    argv = sys.argv[1:] if argv is None else argv
    data_option = argparse.ArgumentParser(add_help=False)  # -h goes on to dualteacher compare's help
    data_option.add_argument("--data", type=Path)
    known, rest = data_option.parse_known_args(argv)
    data = known.data if known.data is not None else ensure_digit_scenes()
    return dualteacher(["compare", "--data", str(data), *DEFAULTS, *rest])


if __name__ == "__main__":
    sys.exit(main())
