"""What a comparison is asked for: :class:`CompareOptions`, the variants it trains, and the
checks of both that run before anything is read or trained."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dualteacher.config import ConfigError
from dualteacher.data.split_files import MASKED
from dualteacher.data.splits import budget_tag, parse_labeled
from dualteacher.experiments.budgets import BUDGETS
from dualteacher.experiments.recipe import (
    BASELINE,
    ITERATIONS,
    UPPER_BOUND,
    WARMUP_ITERATIONS,
    for_method,
    override_keys,
    recipe_config,
)
from dualteacher.registry import METHODS

EXTRA_VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dual_teacher_persistent": ("dual_teacher", ("method.restart_per_shift=false",)),
    UPPER_BOUND: (BASELINE, ()),
}
"""Variants beside the registered methods: name -> (method, its own settings)."""
POOL = "train"
_OWN_KEYS = {
    "data.root": "--data",
    "data.dataset": "--dataset",
    "data.splits_dir": "--splits-dir",
    "data.labeled_split": "--labeled",
    "data.unlabeled_split": "--labeled",
    "method.name": "--methods",
    "train.seed": "--seeds",
    "run_dir": "--runs",
    "train.epochs": "--iterations or --minutes",
    "train.iters_per_epoch": "--iterations or --minutes",
    "method.init_from": "--warmup",
}


@dataclass
class CompareOptions:
    """What to compare; see the module docstring. ``fractions`` are label budgets as
    ``dualteacher split --labeled`` reads them (``1/16``, ``0.125``, ``50``), or ``["masked"]``."""

    data: Path
    out: Path
    fractions: list[str]
    dataset: str = "folder"
    splits_dir: str | None = None
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    variants: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    iterations: int | None = None
    minutes: float | None = None
    budgets: list[str] = field(default_factory=lambda: ["iterations"])
    upper_bound: bool = False
    jobs: int = 1
    runs: Path | None = None
    overrides: list[str] = field(default_factory=list)
    reference: str = "dual_teacher"
    report_only: bool = False
    warmup: int = WARMUP_ITERATIONS

    def __post_init__(self) -> None:
        self.data, self.out = Path(self.data), Path(self.out)
        self.runs = None if self.runs is None else Path(self.runs)


@dataclass
class Comparison:
    """The outcome of :func:`compare`: the summary written to ``summary.json`` and the runs that
    failed (re-running the command retries them)."""

    summary: dict[str, Any]
    failed: list[str]


def variant_of(name: str) -> tuple[str, tuple[str, ...]]:
    """(method, its own settings) of a variant: a registered method as it is, an extra variant, or
    ``METHOD+key=value[+key=value...]``, the method with settings of its ``method`` section
    (``dual_teacher+shift=150`` trains Dual Teacher with ``method.shift=150``)."""
    if name in EXTRA_VARIANTS:
        return EXTRA_VARIANTS[name]
    method, *settings = name.split("+")
    return method, tuple(f"method.{setting}" for setting in settings)


def _unknown(kind: str, names: Sequence[str], known: Collection[str]) -> None:
    bad = [n for n in names if n not in known]
    if bad:
        hint = " (key=value overrides go after a one-value option such as --out)" if "=" in bad[0] else ""
        raise ConfigError(f"{kind}: unknown {bad[0]!r}{hint}; known: {', '.join(known)}")


def check_options(opts: CompareOptions) -> list[str]:
    """Validate everything but the data; return the variants to train (methods, then extras).

    Raises :class:`ConfigError` naming the option or override at fault.
    """
    _unknown("--methods", opts.methods, METHODS)
    _unknown("--variants", [v for v in opts.variants if "+" not in v], [v for v in EXTRA_VARIANTS if v != UPPER_BOUND])
    _unknown("--variants", [variant_of(v)[0] for v in opts.variants if "+" in v], METHODS)
    _unknown("--budget", opts.budgets, BUDGETS)
    if not opts.methods:
        raise ConfigError("--methods: give at least one method")
    if not opts.fractions:
        raise ConfigError("--labeled: give at least one label budget (1/16, 0.125 or a count such as 50)")
    try:
        tags = [fraction_tag(f) for f in opts.fractions]
    except ValueError as error:
        raise ConfigError(f"--labeled: {error}") from None
    if MASKED in opts.fractions and (len(opts.fractions) > 1 or opts.upper_bound):
        raise ConfigError(
            f"--labeled {MASKED} (the train images with a mask as the labelled set) goes alone and without "
            "--upper-bound: label budgets and the upper bound need a mask for every train image"
        )
    if len(set(tags)) < len(tags):
        raise ConfigError(f"--labeled: the same budget is given twice ({', '.join(opts.fractions)})")
    if not opts.seeds or len(set(opts.seeds)) < len(opts.seeds):
        raise ConfigError(f"--seeds: give distinct seeds, got {opts.seeds}")
    if opts.iterations is not None and opts.minutes is not None:
        raise ConfigError("give --iterations or --minutes, not both")
    if (opts.iterations is not None and opts.iterations < 1) or (opts.minutes is not None and opts.minutes <= 0):
        raise ConfigError("--iterations and --minutes must be positive")
    if opts.warmup < 0:
        raise ConfigError(f"--warmup must be 0 (none) or a number of iterations, got {opts.warmup}")
    if opts.iterations is None and opts.minutes is None and opts.warmup >= ITERATIONS:
        raise ConfigError(
            f"--warmup {opts.warmup} leaves none of the recipe's {ITERATIONS} iterations: "
            "give --iterations or --minutes"
        )
    if opts.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {opts.jobs}")
    if "time" in opts.budgets and opts.reference not in opts.methods:
        raise ConfigError(
            f"--budget time gives every method the training time of {opts.reference}: add it to --methods"
        )
    clash = sorted(override_keys(opts.overrides) & set(_OWN_KEYS))
    if clash:
        raise ConfigError(f"override {clash[0]}: compare sets it for every run; use {_OWN_KEYS[clash[0]]}")
    variants = [*opts.methods, *[v for v in opts.variants if v not in opts.methods]]
    for variant in [*variants, opts.reference, UPPER_BOUND]:
        method, settings = variant_of(variant)
        recipe_config(".", POOL, POOL, method, ".", 1, 0, [*settings, *for_method(method, opts.overrides)])
    for key in sorted(k for k in override_keys(opts.overrides) if k.startswith("method.")):
        if not any(for_method(variant_of(v)[0], [f"{key}=0"]) for v in variants):
            raise ConfigError(f"override {key}: a setting of none of the methods compared ({', '.join(variants)})")
    return variants


def fraction_tag(fraction: str) -> str:
    """The file-name tag of a label budget (``"1-16"``, ``"50"``, ``"masked"``); ValueError if unreadable."""
    return MASKED if fraction == MASKED else budget_tag(parse_labeled(fraction))
