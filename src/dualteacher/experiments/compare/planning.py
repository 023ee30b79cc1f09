"""Planning a comparison: the options and the data checked, the split lists written, the recipe
adapted to the data, and the length fixed (by a timed probe of the reference's step for
``--minutes``). Everything here runs before any run trains."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

from dualteacher.config import ConfigError, load_config
from dualteacher.data.check import check_data
from dualteacher.data.core import DataError
from dualteacher.data.digits import default_cache_dir
from dualteacher.data.registry import open_source
from dualteacher.data.source import DataSource
from dualteacher.data.split_files import MASKED, split_source
from dualteacher.experiments.compare.grid import Plan
from dualteacher.experiments.compare.options import POOL, CompareOptions, check_options
from dualteacher.experiments.compare.running import probe_worker
from dualteacher.experiments.probe import PROBE_TIMED, PROBE_WARMUP, device_name, iterations_for
from dualteacher.experiments.recipe import ITERATIONS, RECIPE, adapt_recipe, without_method_settings
from dualteacher.training.resume import files_digest


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
    key = {
        "method": opts.reference,
        "settings": run.settings,
        "device": device_name(),
        "threads": run.threads,
        "warmup": PROBE_WARMUP,
        "timed": PROBE_TIMED,
        "timing": "1- and 11-iteration sessions, difference",
    }
    path = opts.out / "probe.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if {k: stored.get(k) for k in key} == key:
            return stored
    if opts.report_only:
        raise ConfigError(
            f"--minutes with --report-only needs the probe of an earlier call ({path} is missing or stale)"
        )
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        seconds = pool.submit(probe_worker, run).result()
    result = {**key, "s_per_iteration": seconds}
    opts.out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    return result
