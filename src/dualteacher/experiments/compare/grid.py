"""The grid of a comparison: each :class:`Run` (a variant on one labelled split and seed under
one budget, with its run directory, summary file and warm-up) and the :class:`Plan` that names
them all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dualteacher.config import Config
from dualteacher.experiments.compare.options import POOL, CompareOptions, fraction_tag, variant_of
from dualteacher.experiments.recipe import (
    BASELINE,
    ITERATIONS,
    RECIPE,
    UPPER_BOUND,
    Adaptation,
    for_method,
    method_settings,
    recipe_config,
    warm_start,
)


@dataclass(frozen=True)
class Run:
    """One training run of the grid, as a worker process receives it.

    ``data`` locates the dataset (``data.dataset``, ``data.splits_dir``); ``overrides`` go after
    the recipe: the variant's own settings, the recipe's adaptation, the user's overrides.
    """

    name: str
    variant: str
    fraction: str
    seed: int
    budget: str
    iterations: int
    root: str
    labeled: str
    unlabeled: str
    data: tuple[str, ...]
    overrides: tuple[str, ...]
    run_dir: str
    summary: str
    threads: int
    data_digest: str = ""
    warmup_dir: str = ""
    """A warm-started run's warm-up run directory, its ``method.init_from``: in the run's settings,
    not in what a finished run is checked against (the run's name carries the warm-up)."""
    warmup_summary: str = ""
    """The warm-up run's summary, whose time and curve a warm-started run's summary includes."""

    @property
    def method(self) -> str:
        return variant_of(self.variant)[0]

    @property
    def settings(self) -> list[str]:
        """Every setting but the data's location, length and seed: what a finished run is checked against."""
        return [*RECIPE, *method_settings(self.method), *self.overrides]

    def config(self) -> Config:
        """The run's validated settings."""
        return recipe_config(
            self.root,
            self.labeled,
            self.unlabeled,
            self.method,
            self.run_dir,
            self.iterations,
            self.seed,
            [*self.data, *self.overrides, *self.start],
        )

    @property
    def start(self) -> list[str]:
        """``method.init_from`` of a warm-started run (none otherwise)."""
        return warm_start(self.warmup_dir) if self.warmup_dir else []


@dataclass
class Plan:
    """The checked options with everything derived from the data: splits, recipe, length."""

    opts: CompareOptions
    variants: list[str]
    adaptation: Adaptation
    splits: dict[tuple[str, int], tuple[str, str]]
    threads: int
    iterations: int = ITERATIONS
    probe: dict[str, Any] | None = None
    data_digest: str = ""
    """:func:`data_digest` of the data the runs train on."""

    @property
    def runs_dir(self) -> Path:
        return self.opts.runs if self.opts.runs is not None else self.opts.out / "runs"

    def run(self, fraction: str, seed: int, variant: str, budget: str, iterations: int) -> Run:
        """The run of ``variant`` on ``fraction`` (``"all"``: every train image labelled) and
        ``seed``; with a warm start (and a labelled fraction), from that fraction's warm-up."""
        if fraction == "all":
            (labeled, unlabeled), tag = (POOL, POOL), "all"
        else:
            (labeled, unlabeled), tag = self.splits[fraction, seed], fraction_tag(fraction)
        name = f"{tag}_seed{seed}_{variant}_{budget}{iterations}"
        warmup_dir, warmup_summary = "", ""
        if self.opts.warmup and fraction != "all" and budget not in ("warmup", "probe"):
            warmup = self.warmup_run(fraction, seed)
            name += f"_after_warmup{self.opts.warmup}"
            warmup_dir, warmup_summary = warmup.run_dir, warmup.summary
        method, settings = variant_of(variant)
        overrides = (*settings, *self.adaptation.overrides, *for_method(method, self.opts.overrides))
        return Run(
            name,
            variant,
            fraction,
            seed,
            budget,
            iterations,
            str(self.opts.data),
            labeled,
            unlabeled,
            tuple(_data_settings(self.opts)),
            overrides,
            str(self.runs_dir / name),
            str(self.opts.out / "summaries" / f"{name}.json"),
            self.threads,
            self.data_digest,
            warmup_dir,
            warmup_summary,
        )

    def warmup_run(self, fraction: str, seed: int) -> Run:
        """The supervised warm-up of ``fraction`` and ``seed`` (budget ``"warmup"``)."""
        return self.run(fraction, seed, BASELINE, "warmup", self.opts.warmup)

    def warmup_runs(self) -> list[Run]:
        """One warm-up per fraction and seed (none without a warm start)."""
        opts = self.opts
        return [self.warmup_run(f, s) for f in opts.fractions for s in opts.seeds] if opts.warmup else []

    def equal_iteration_runs(self) -> list[Run]:
        """Every variant on every fraction and seed, then the upper bound per seed (for the
        warm-up's iterations more under a warm start)."""
        n, opts = self.iterations, self.opts
        runs = [self.run(f, s, v, "iterations", n) for f in opts.fractions for s in opts.seeds for v in self.variants]
        upper = [self.run("all", s, UPPER_BOUND, "iterations", n + opts.warmup) for s in opts.seeds]
        return runs + (upper if opts.upper_bound else [])

    def equal_time_runs(self, finished: list[dict]) -> list[Run]:
        """Each method (but the reference) for the reference's training time, per fraction and seed
        whose equal-iteration runs of both finished."""
        speed = {
            (r["fraction"], r["seed"], r["variant"]): r["s_per_it"] for r in finished if r["budget"] == "iterations"
        }
        runs = []
        for fraction in self.opts.fractions:
            for seed in self.opts.seeds:
                reference = speed.get((fraction, seed, self.opts.reference))
                for method in self.opts.methods:
                    own = speed.get((fraction, seed, method))
                    if method != self.opts.reference and reference is not None and own is not None:
                        count = max(1, round(self.iterations * reference / own))
                        runs.append(self.run(fraction, seed, method, "time", count))
        return runs


def _data_settings(opts: CompareOptions) -> list[str]:
    settings = [f"data.dataset={json.dumps(opts.dataset)}"]
    return settings + ([f"data.splits_dir={json.dumps(str(opts.splits_dir))}"] if opts.splits_dir else [])
