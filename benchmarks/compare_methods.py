"""Method comparison on the built-in digit scenes: ``dualteacher compare`` with this benchmark's defaults.

Builds the digit scenes (or finds them in the cache), then runs ``dualteacher compare`` on them
with the defaults below; any option of ``dualteacher compare`` given here replaces its default,
and ``key=value`` overrides go last. For example (the committed CPU grid)::

    python benchmarks/compare_methods.py --methods supervised mean_teacher dual_teacher --budget iterations --upper-bound

Defaults: ``--labeled 1/32 1/16 --budget iterations time --warmup 300 --iterations 700 --out
benchmarks/results/compare --runs runs/compare`` (the protocol's supervised warm start of 300 of
the recipe's 1,000 iterations; run directories and checkpoints stay out of the repository), and
``dualteacher compare``'s own (every method, seeds 0 1 2, one job).
"""

from __future__ import annotations

import sys

from dualteacher.cli import main as dualteacher
from dualteacher.data.digits import ensure_digit_scenes
from dualteacher.recipe import ITERATIONS, WARMUP_ITERATIONS

DEFAULTS = ["--labeled", "1/32", "1/16", "--budget", "iterations", "time", "--warmup", str(WARMUP_ITERATIONS),
            "--out", "benchmarks/results/compare", "--runs", "runs/compare"]
LENGTH = ["--iterations", str(ITERATIONS - WARMUP_ITERATIONS)]
"""The default length after the warm-up (left out when ``--minutes`` is given)."""


def main(argv: list[str] | None = None) -> int:
    """``dualteacher compare --data <digit scenes> DEFAULTS [LENGTH] argv``; its exit status."""
    argv = sys.argv[1:] if argv is None else argv
    length = [] if any(a == "--minutes" or a.startswith("--minutes=") for a in argv) else LENGTH
    return dualteacher(["compare", "--data", str(ensure_digit_scenes()), *DEFAULTS, *length, *argv])


if __name__ == "__main__":
    sys.exit(main())
