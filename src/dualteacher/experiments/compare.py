"""``dualteacher compare``: does semi-supervised training help on my data?

Trains the chosen methods with the shared recipe (:mod:`dualteacher.experiments.recipe`, adapted to the
data and overridable with ``key=value``) on labelled fractions of the train split drawn per seed
(nested lists, as ``dualteacher split`` writes them) or, with the budget ``masked``, on the
train images that have a mask file (the others unlabelled, one split for every seed; for data
that is only partly annotated, so without an upper bound), and writes::

    OUT/summary.json          the comparison (schema in :func:`summarize`)
    OUT/table.md              the same as markdown tables, with peak memory
    OUT/miou_vs_time.png      student val mIoU against training time, one panel per fraction
    OUT/coupling.png          teacher-student coupling (first fraction and seed), if teachers ran
    OUT/summaries/<run>.json  one per run; OUT/probe.json: the --minutes probe

Budgets. ``iterations``: every method trains N iterations after the warm-up (``iterations``;
``minutes`` M: N such that the reference method trains about M minutes, from a timed probe of
its step; neither: the recipe's 1,000 less the warm-up).
``time``: every method trains for the training time of the reference's N-iteration run of the
same fraction and seed: method m runs round(N · s_ref / s_m) iterations, s the seconds per
training iteration (evaluation excluded) of the equal-iteration runs, which ``time`` therefore
also trains. Variants and the upper bound train under ``iterations`` only.

Warm start (``warmup`` W > 0; default the recipe's ``WARMUP_ITERATIONS``, 0 for none): per
fraction and seed, one supervised run of W iterations on the labelled split trains first, and
every run of that fraction and seed, supervised included, starts from its student
(``method.init_from``, :mod:`dualteacher.training.warm_start`) for its N iterations; the upper bound
trains W + N iterations from the pretrained encoder. A warm-started run's training time, curve
and iterations include the warm-up's, so every wall-clock figure counts it; its seconds per
iteration are its own steps'.

Each run is a fresh spawned process (``jobs`` at a time, the CPU threads shared out), so its
peak memory is its own. A run with a summary is reused when its settings and data match, an interrupted
one resumes from its checkpoint: the same command again trains nothing new.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dualteacher.experiments.budgets import BUDGETS
from dualteacher.config import Config, ConfigError, load_config
from dualteacher.data.check import check_data
from dualteacher.data.digits import default_cache_dir
from dualteacher.data.core import DataError
from dualteacher.data.registry import open_source
from dualteacher.data.source import DataSource
from dualteacher.data.split_files import MASKED, split_source
from dualteacher.data.splits import budget_tag, parse_labeled
from dualteacher.training.loop import train
from dualteacher.experiments.probe import PROBE_TIMED, PROBE_WARMUP, iterations_for, step_seconds
from dualteacher.experiments.plots import coupling_figure, miou_vs_time_figure
from dualteacher.experiments.recipe import (
    BASELINE,
    ITERATIONS,
    RECIPE,
    WARMUP_ITERATIONS,
    UPPER_BOUND,
    Adaptation,
    adapt_recipe,
    for_method,
    method_settings,
    override_keys,
    recipe_config,
    warm_start,
    without_method_settings,
)
from dualteacher.registry import METHODS
from dualteacher.training.resume import files_digest
from dualteacher.runlog import read_log

logger = logging.getLogger(__name__)

EXTRA_VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dual_teacher_persistent": ("dual_teacher", ("method.restart_per_shift=false",)),
    UPPER_BOUND: (BASELINE, ()),
}
"""Variants beside the registered methods: name -> (method, its own settings)."""
POOL = "train"
TOLERANCE = 1e-9
_OWN_KEYS = {
    "data.root": "--data", "data.dataset": "--dataset", "data.splits_dir": "--splits-dir",
    "data.labeled_split": "--labeled", "data.unlabeled_split": "--labeled", "method.name": "--methods",
    "train.seed": "--seeds", "run_dir": "--runs", "train.epochs": "--iterations or --minutes",
    "train.iters_per_epoch": "--iterations or --minutes", "method.init_from": "--warmup",
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
        return recipe_config(self.root, self.labeled, self.unlabeled, self.method, self.run_dir, self.iterations,
                             self.seed, [*self.data, *self.overrides, *self.start])

    @property
    def start(self) -> list[str]:
        """``method.init_from`` of a warm-started run (none otherwise)."""
        return warm_start(self.warmup_dir) if self.warmup_dir else []


@dataclass
class Comparison:
    """The outcome of :func:`compare`: the summary written to ``summary.json`` and the runs that
    failed (re-running the command retries them)."""

    summary: dict[str, Any]
    failed: list[str]


# ---------------------------------------------------------------- checks and plan
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
        raise ConfigError(f"--labeled {MASKED} (the train images with a mask as the labelled set) goes alone and without "
                          "--upper-bound: label budgets and the upper bound need a mask for every train image")
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
        raise ConfigError(f"--warmup {opts.warmup} leaves none of the recipe's {ITERATIONS} iterations: "
                          "give --iterations or --minutes")
    if opts.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {opts.jobs}")
    if "time" in opts.budgets and opts.reference not in opts.methods:
        raise ConfigError(f"--budget time gives every method the training time of {opts.reference}: add it to --methods")
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


def _data_settings(opts: CompareOptions) -> list[str]:
    settings = [f"data.dataset={json.dumps(opts.dataset)}"]
    return settings + ([f"data.splits_dir={json.dumps(str(opts.splits_dir))}"] if opts.splits_dir else [])


def fraction_tag(fraction: str) -> str:
    """The file-name tag of a label budget (``"1-16"``, ``"50"``, ``"masked"``); ValueError if unreadable."""
    return MASKED if fraction == MASKED else budget_tag(parse_labeled(fraction))


def check_dataset(source: DataSource, val_split: str, labeled: str = POOL, unlabeled: str | None = None) -> None:
    """The fast data check (each file decoded once, then known from the project's cache) of the
    val split and of the images and masks of ``labeled`` (every train image by default) and the
    images of ``unlabeled`` (by default the rest of the reader's unlabelled pool, if it is
    another split).

    Raises :class:`DataError` listing every problem, before any run starts.
    """
    if unlabeled is None:
        pool = source.default_unlabeled_pool(POOL)
        unlabeled = pool if pool != POOL else None
    splits = {"labeled": labeled, "val": val_split, **({"unlabeled": unlabeled} if unlabeled else {})}
    report = check_data(source, splits, full=False, cache_dir=default_cache_dir())
    if report.errors:
        raise DataError(report.format(severities=("error", "warning")))


def data_digest(source: DataSource, val_split: str) -> str:
    """SHA-256 (hex) over the ids of the train pool and of ``val_split`` with the byte sizes of
    their image and mask files: a finished run's summary is reused only for the same data."""
    parts = []
    for split in (POOL, val_split):
        ids = source.split_ids(split)
        files = source.files(ids, labeled=True)
        parts.append(f"{split}:{files_digest(ids, files.images, files.masks)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _threads(jobs: int) -> int:
    """Threads per run: the CPUs shared out over ``jobs``, at most torch's own (``OMP_NUM_THREADS``)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(torch.get_num_threads(), cpus // jobs))


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
        return Run(name, variant, fraction, seed, budget, iterations, str(self.opts.data), labeled, unlabeled,
                   tuple(_data_settings(self.opts)), overrides, str(self.runs_dir / name),
                   str(self.opts.out / "summaries" / f"{name}.json"), self.threads, self.data_digest, warmup_dir,
                   warmup_summary)

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
        speed = {(r["fraction"], r["seed"], r["variant"]): r["s_per_it"] for r in finished if r["budget"] == "iterations"}
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


def plan_comparison(opts: CompareOptions) -> Plan:
    """Check the options and the data, write the split lists, adapt the recipe, fix the length
    (probing the reference's step for ``minutes``). Raises :class:`ConfigError` or
    :class:`DataError` before any run starts."""
    variants = check_options(opts)
    data = load_config(None, [*RECIPE, *without_method_settings(opts.overrides)]).data
    source = open_source(opts.dataset, opts.data, opts.splits_dir, ignore_index=data.ignore_index)
    val_split = data.val_split
    splits = {}
    if opts.fractions == [MASKED]:  # one split, whatever the seed: the user's own annotations
        labeled, unlabeled = split_source(source, MASKED, 0, pool=POOL)
        check_dataset(source, val_split, labeled.stem, unlabeled.stem)
        splits = {(MASKED, seed): (labeled.stem, unlabeled.stem) for seed in opts.seeds}
    else:
        check_dataset(source, val_split)
        for fraction in opts.fractions:
            for seed in opts.seeds:
                labeled, unlabeled = split_source(source, fraction, seed, pool=POOL)
                splits[fraction, seed] = (labeled.stem, unlabeled.stem)
    adaptation = adapt_recipe(source, [POOL, source.default_unlabeled_pool(POOL)], val_split, opts.overrides)
    plan = Plan(opts, variants, adaptation, splits, _threads(opts.jobs), data_digest=data_digest(source, val_split))
    if opts.iterations is not None:
        plan.iterations = opts.iterations
    elif opts.minutes is not None:
        plan.probe = probe(plan)
        plan.iterations = iterations_for(opts.minutes, plan.probe["s_per_iteration"])
    else:
        plan.iterations = ITERATIONS - opts.warmup
    return plan


# ---------------------------------------------------------------- the probe behind --minutes
def probe(plan: Plan) -> dict[str, Any]:
    """Seconds per training iteration of the reference method, alone in a fresh process: after
    :data:`PROBE_WARMUP` iterations, :data:`PROBE_TIMED` iterations timed without the data
    loaders' start-up (see :func:`probe_worker`; first fraction, first seed).

    Stored in ``OUT/probe.json`` and reused while method, settings and threads are the same,
    so that the same command picks the same length (and so finds its finished runs).
    """
    opts = plan.opts
    run = plan.run(opts.fractions[0], opts.seeds[0], opts.reference, "probe", ITERATIONS)
    run = dataclasses.replace(run, run_dir=str(plan.runs_dir / f"probe_{opts.reference}"))
    key = {"method": opts.reference, "settings": run.settings, "device": device_name(), "threads": run.threads,
           "warmup": PROBE_WARMUP, "timed": PROBE_TIMED, "timing": "1- and 11-iteration sessions, difference"}
    path = opts.out / "probe.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if {k: stored.get(k) for k in key} == key:
            return stored
    if opts.report_only:
        raise ConfigError(f"--minutes with --report-only needs the probe of an earlier call ({path} is missing or stale)")
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        seconds = pool.submit(probe_worker, run).result()
    result = {**key, "s_per_iteration": seconds}
    opts.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result


def probe_worker(run: Run) -> float:
    """In a fresh process with the run's threads: :func:`~dualteacher.experiments.probe.step_seconds`
    of ``run``, in its run directory, removed before and after."""
    torch.set_num_threads(run.threads)
    shutil.rmtree(run.run_dir, ignore_errors=True)
    seconds = step_seconds(run.config())
    shutil.rmtree(run.run_dir, ignore_errors=True)
    return seconds


# ---------------------------------------------------------------- runs
def peak_memory_mb() -> float:
    """Peak memory of this process: allocated CUDA memory if a GPU trained, else peak RSS."""
    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name() -> str:
    """The hardware a run trains on, as the table reports it."""
    return f"cuda: {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu"


def run_one(run: Run) -> dict[str, Any] | None:
    """Train ``run`` in this (fresh) process and write its summary; None if it was interrupted
    (SIGTERM/SIGINT: its checkpoint is kept, the next call continues it)."""
    torch.set_num_threads(run.threads)
    cfg = run.config()
    start = time.perf_counter()
    record = train(cfg, progress=False)
    if "interrupted" in record:
        return None
    evals = [r for r in read_log(Path(run.run_dir)) if r["type"] == "eval"]
    final = evals[-1]
    iterations = cfg.train.epochs * cfg.train.iters_per_epoch
    summary = {
        "name": run.name, "variant": run.variant, "method": run.method, "seed": run.seed, "fraction": run.fraction,
        "budget": run.budget, "iterations": iterations,
        "student_miou": final["student/miou"],
        "best_final_miou": max(v for k, v in final.items() if k.endswith("/miou")),
        "train_seconds": final["train_seconds"],
        "s_per_it": final["train_seconds"] / iterations,
        "total_seconds": time.perf_counter() - start,
        "peak_memory_mb": peak_memory_mb(),
        "threads": run.threads,
        "device": device_name(),
        "settings": run.settings,
        "settings_version": SETTINGS_VERSION,
        "data": run.data_digest,
        "curve": [[r["train_seconds"], r["student/miou"]] for r in evals],
    }
    if run.warmup_summary:
        summary = _after_warmup(summary, json.loads(Path(run.warmup_summary).read_text()))
    path = Path(run.summary)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, path)
    return summary


def _after_warmup(summary: dict[str, Any], warmup: dict[str, Any]) -> dict[str, Any]:
    """A warm-started run's summary that counts its warm-up: iterations and training seconds
    added, the warm-up's curve first and the run's shifted by the warm-up's training time;
    ``s_per_it`` stays the run's own steps', ``total_seconds`` (wall time with evaluations and
    start-up) the run's own, and ``warmup`` records what was added."""
    seconds = warmup["train_seconds"]
    return {
        **summary,
        "iterations": warmup["iterations"] + summary["iterations"],
        "train_seconds": seconds + summary["train_seconds"],
        "curve": [*warmup["curve"], *([t + seconds, m] for t, m in summary["curve"])],
        "warmup": {"name": warmup["name"], "iterations": warmup["iterations"], "train_seconds": seconds},
    }


SETTINGS_VERSION = 2
"""Summaries record it from the release in which each method declares its own settings on; a
summary without it stored the settings of that time."""


def same_settings(method: str, summary: dict[str, Any], settings: list[str]) -> bool:
    """Whether the settings a summary stored resolve to the same configuration of ``method`` as
    ``settings``; spelling a default out, or leaving it out, changes nothing. A Dual Teacher
    summary from before :data:`SETTINGS_VERSION` shifted teachers once per epoch
    (``train.iters_per_epoch`` of its settings), which ``method.shift`` now says."""
    stored = summary.get("settings")
    if stored is None:
        return False
    if summary.get("settings_version", 1) < SETTINGS_VERSION and method == "dual_teacher":
        epoch = [s.split("=", 1)[1] for s in stored if s.startswith("train.iters_per_epoch=")]
        stored = [*stored, f"method.shift={epoch[-1] if epoch else 'epoch'}"]
    try:
        before = load_config(None, [*stored, f"method.name={method}"])
    except ConfigError:
        return False
    return before.to_dict() == load_config(None, [*settings, f"method.name={method}"]).to_dict()


def finished(run: Run) -> dict[str, Any] | None:
    """The summary of ``run`` if it finished; :class:`ConfigError` if it ran with other settings or
    on other data (a summary written before summaries recorded their data is taken as it is)."""
    path = Path(run.summary)
    if not path.exists():
        return None
    summary = json.loads(path.read_text())
    if not same_settings(run.method, summary, run.settings):
        stored = summary.get("settings")
        differ = [s for s in run.settings if s not in (stored or [])] + [s for s in stored or [] if s not in run.settings]
        why = "none recorded" if stored is None else f"e.g. {differ[0]}" if differ else "in another order"
        raise ConfigError(f"{path} was trained with other settings ({why}): choose another --out, or remove it to retrain")
    if "data" in summary and summary["data"] != run.data_digest:
        raise ConfigError(f"{path} was trained on other data (other ids or files of other sizes in the train or val "
                          "split): choose another --out, or remove it to retrain")
    warmup = Path(run.warmup_summary) if run.warmup_summary else None
    if warmup is not None and warmup.exists():
        current = json.loads(warmup.read_text())
        if summary.get("warmup", {}).get("train_seconds") != current["train_seconds"]:
            raise ConfigError(f"{path} started from another warm-up than {warmup} (retrained since): remove it to "
                              "retrain it from this one")
    return summary


def check_warmup_checkpoints(runs: list[Run]) -> None:
    """Raise :class:`ConfigError` naming both files when an unfinished warm-started run needs a
    finished warm-up whose checkpoint is gone (e.g. a fresh ``--runs``)."""
    for run in runs:
        if not run.warmup_dir or finished(run) is not None:
            continue
        checkpoint = Path(run.warmup_dir) / "last.safetensors"
        if Path(run.warmup_summary).exists() and not checkpoint.exists():
            raise ConfigError(f"{run.name} starts from the warm-up {checkpoint}, which is gone although its summary "
                              f"{run.warmup_summary} is there: remove the summary to retrain the warm-up")


def waiting_for_warmup(runs: list[Run], finished_names: Collection[str]) -> list[Run]:
    """The unfinished warm-started ``runs`` whose warm-up is not among ``finished_names`` (it failed
    or was interrupted): they would start from a partial network, so they do not train."""
    return [run for run in runs if run.warmup_dir and finished(run) is None
            and Path(run.warmup_summary).stem not in finished_names]


def launch(runs: list[Run], jobs: int, done: Callable[[dict], None]) -> list[str]:
    """Train ``runs``, ``jobs`` at a time, each in a fresh spawned process; call ``done`` with each
    summary as it arrives; return the names of runs that failed or were interrupted."""
    failed = []
    with ProcessPoolExecutor(min(jobs, len(runs)), mp_context=mp.get_context("spawn"), max_tasks_per_child=1,
                             initializer=_log_at, initargs=(logging.getLogger("dualteacher").getEffectiveLevel(),)) as pool:
        futures = {pool.submit(run_one, run): run for run in runs}
        for future in as_completed(futures):
            run = futures[future]
            try:
                summary = future.result()
            except Exception as error:  # noqa: BLE001 - one failed run must not stop the grid
                logger.warning(f"{run.name}: failed: {type(error).__name__}: {error}")
                failed.append(run.name)
                continue
            if summary is None:
                logger.warning(f"{run.name}: interrupted; its checkpoint is kept for the next call")
                failed.append(run.name)
                continue
            logger.info(f"{run.name}: student mIoU {summary['student_miou']:.4f}, {summary['s_per_it']:.3f} s/it, "
                        f"{summary['train_seconds']:.0f} s training")
            done(summary)
    return failed


def _log_at(level: int) -> None:
    """In a run's process: report at the level the comparing process reports at (a spawned
    process imports the package afresh, at INFO)."""
    logging.getLogger("dualteacher").setLevel(level)


# ---------------------------------------------------------------- summary
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
        return None if target(run) is None else time_to_accuracy(run["curve"], target(run))

    return {
        "mean": statistics.mean(finals),
        "std": statistics.stdev(finals) if len(finals) > 1 else None,
        "seeds": {str(r["seed"]): r["student_miou"] for r in runs},
        "per_seed": {
            str(r["seed"]): {
                "iterations": r["iterations"], "train_seconds": r["train_seconds"], "s_per_iteration": r["s_per_it"],
                "peak_memory_mb": r["peak_memory_mb"], "time_to_accuracy": reached(r), "target": target(r),
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


def _with_reference_timed(results: list[dict], plan: Plan) -> list[dict]:
    """``results`` plus, under the ``time`` budget, the reference's equal-iteration runs as its
    equal-wall-clock runs (its time is the budget)."""
    if "time" not in plan.opts.budgets:
        return results
    reference = [{**r, "budget": "time"} for r in results
                 if r["budget"] == "iterations" and r["variant"] == plan.opts.reference]
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
    every = _with_reference_timed(results, plan)
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


def _table_row(name: str, fraction: str, cell: dict[str, Any], supervised: bool) -> str:
    """One markdown row; costs are means over the seeds' ``per_seed`` detail, memory their maximum."""
    seeds = list(cell["per_seed"].values())
    its = sorted({s["iterations"] for s in seeds})
    miou = f"{cell['mean']:.4f}" + (f" ± {cell['std']:.4f}" if cell["std"] is not None else " (1 seed)")
    reached = ("–" if not supervised else "no supervised run" if any(s.get("target", 0) is None for s in seeds)
               else "never" if cell["time_to_accuracy"] is None else f"{cell['time_to_accuracy']:.0f}")
    return (f"| {name} | {fraction} | {miou} | {len(seeds)} | {its[0] if len(its) == 1 else f'{its[0]}–{its[-1]}'} "
            f"| {statistics.mean(s['s_per_iteration'] for s in seeds):.3f} "
            f"| {statistics.mean(s['train_seconds'] for s in seeds):.0f} "
            f"| {max(s['peak_memory_mb'] for s in seeds):.0f} | {reached} |")


def write_table(summary: dict[str, Any], fractions: Sequence[str], path: Path) -> str:
    """``table.md``: per budget, one row per method and fraction (mean ± std over seeds, cost,
    time to supervised's mIoU), and the upper bound."""
    budget = summary["budget"]
    lines = [f"Trained on: {'; '.join(budget['devices']) or '–'}, {' or '.join(map(str, budget['threads_per_run']))} thread(s) per run. "
             f"Recipe: {'; '.join(summary['recipe']['account'])}", ""]
    header = ["| method | labelled | student mIoU (mean ± std) | seeds | iterations | s / iteration | training time (s) "
              "| peak memory (MiB) | time to supervised's mIoU (s) |", "|---|---|---|---|---|---|---|---|---|"]
    warm = (f", each after a supervised warm-up of {budget['warmup']} iterations (counted in every time and "
            "iteration count; the upper bound trains as long from the pretrained encoder)") if budget.get("warmup") else ""
    titles = {"iterations": f"**Equal iterations** ({budget['iterations']}{warm})",
              "time": f"**Equal wall-clock** ({budget['reference']}'s training time for {budget['iterations']} "
                      f"iterations{warm})"}
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
        miou_vs_time_figure(_with_reference_timed(results, plan), plan.opts.fractions, plan.variants, upper,
                            out / "miou_vs_time.png")
        first = [r for r in results if r["budget"] == "iterations" and r["fraction"] == plan.opts.fractions[0]
                 and r["seed"] == plan.opts.seeds[0]]
        runs = {r["variant"]: plan.runs_dir / r["name"] for r in first}
        runs = {v: d for v, d in runs.items() if (d / "metrics.jsonl").exists() and _has_teachers(d)}
        if runs:
            coupling_figure(runs, out / "coupling.png")
    return summary


def _has_teachers(run_dir: Path) -> bool:
    return any(k.startswith("coupling/") for r in read_log(run_dir) for k in r)


# ---------------------------------------------------------------- the verb
def _train_or_reuse(runs: list[Run], plan: Plan, results: list[dict]) -> list[str]:
    """Add finished runs' summaries to ``results``, train the others (unless report-only)."""
    pending = []
    for run in runs:
        summary = finished(run)
        if summary is not None:
            results.append(summary)
        else:
            pending.append(run)
    if plan.opts.report_only or not pending:
        return []
    logger.info(f"training {len(pending)} run(s), {min(plan.opts.jobs, len(pending))} at a time, "
                f"{plan.threads} thread(s) each; {len(runs) - len(pending)} finished already")

    def done(summary: dict) -> None:
        results.append(summary)
        write_outputs(results, plan, figures=False)

    return launch(pending, plan.opts.jobs, done)


def compare(opts: CompareOptions) -> Comparison:
    """Run (or resume) the comparison of ``opts`` and write its outputs; see the module docstring.

    Raises :class:`ConfigError` / :class:`DataError` for bad options, overrides or data, and for
    finished runs of ``OUT`` trained with other settings, before any run starts.
    """
    plan = plan_comparison(opts)
    logger.info("recipe: " + "\n        ".join(plan.adaptation.account))
    if plan.probe is not None:
        logger.info(f"--minutes {opts.minutes}: {opts.reference} took {plan.probe['s_per_iteration']:.3f} s per "
                    f"training iteration ({PROBE_TIMED} timed after {PROBE_WARMUP}, alone, {plan.threads} thread(s)) "
                    f"-> {plan.iterations} iterations")
    warmups, equal_iterations = plan.warmup_runs(), plan.equal_iteration_runs()
    for run in [*warmups, *equal_iterations]:
        finished(run)  # settings of earlier runs checked before anything trains
    results: list[dict] = []
    if not opts.report_only:
        check_warmup_checkpoints(equal_iterations)
    failed = _train_or_reuse(warmups, plan, results)
    waiting = waiting_for_warmup(equal_iterations, {r["name"] for r in results})
    for run in waiting:
        logger.warning(f"{run.name}: not trained: its warm-up {Path(run.warmup_summary).stem} has not finished")
    failed += [run.name for run in waiting]
    failed += _train_or_reuse([run for run in equal_iterations if run not in waiting], plan, results)
    if "time" in opts.budgets:
        failed += _train_or_reuse(plan.equal_time_runs(results), plan, results)
    summary = write_outputs(results, plan, figures=True)
    logger.info((opts.out / "table.md").read_text())
    return Comparison(summary, failed)
