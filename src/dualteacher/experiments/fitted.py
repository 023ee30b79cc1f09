"""``dualteacher train --data ROOT --method NAME``: one method with the shared recipe fitted to the
data, without a YAML file.

The run is built as ``dualteacher compare`` builds each of its runs (:mod:`dualteacher.experiments.recipe`)
and :func:`plan_fitted` says, one sentence each, what it chose:

* the splits: those ``dualteacher init`` wrote (:func:`~dualteacher.data.prepare.own_splits`:
  the train images with a mask labelled, the others unlabelled), unless ``data.labeled_split`` is given;
* the recipe's adaptation to the images (:func:`~dualteacher.experiments.recipe.adapt_recipe`:
  crop, val batch);
* the length: ``iterations`` in all, or as many as take about ``minutes`` (from a timed probe of
  the method's step, :mod:`dualteacher.experiments.probe`, stored in ``RUN_DIR/probe.json`` so that
  the same command finds the same length and continues its run), or the recipe's 1,000;
* the warm start: for a method that reads unlabelled images, a supervised warm-up of the recipe's
  share of the length (3/10, or ``warmup``) on the labelled split trains first in
  ``RUN_DIR/warmup``, and the method continues from its student for the rest
  (:func:`~dualteacher.experiments.recipe.warm_start`, as the demo and ``compare`` do);
* the run directory: ``runs/<data folder name>_<method>``.

:func:`train_fitted` trains the plan: the warm-up, then the method.

Every setting stays overridable with ``key=value``, applied last (to the warm-up too, except
``run_dir``, ``method.*`` and the length).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dualteacher.config import Config, ConfigError, load_config
from dualteacher.data.core import DataError
from dualteacher.data.prepare import command, own_splits
from dualteacher.data.registry import open_source
from dualteacher.data.source import DataSource
from dualteacher.experiments.recipe import (
    BASELINE,
    ITERATIONS,
    RECIPE,
    adapt_recipe,
    method_settings,
    override_keys,
    recipe_config,
    run_length,
    warm_start,
    warmup_share,
)
from dualteacher.registry import METHODS

logger = logging.getLogger(__name__)

WARMUP_DIR = "warmup"
"""The warm-up's run directory inside the method's."""
OWN_KEYS = {
    "data.root": "--data",
    "method.name": "--method",
    "data.dataset": "--dataset",
    "data.splits_dir": "--splits-dir",
}
"""Settings that ``train --data`` takes from its options, not from overrides."""
_NOT_IN_WARMUP = ("run_dir", "train.epochs", "train.iters_per_epoch")


@dataclass(frozen=True)
class FittedRun:
    """What :func:`plan_fitted` chose: the run's settings, the warm-up's (None: no warm start),
    and one sentence per choice."""

    config: Config
    warmup: Config | None
    account: list[str]


def default_run_dir(root: str | Path, method: str) -> Path:
    """``runs/<data folder name>_<method>``, under the current directory."""
    return Path("runs") / f"{Path(root).expanduser().resolve().name}_{method}"


def _splits(
    source: DataSource, shown: str, base: Config, user: set[str], reads_unlabeled: bool
) -> tuple[str, str, str]:
    """The labelled and unlabelled split and why (see the module docstring)."""
    if "data.labeled_split" in user:
        unlabeled = base.data.unlabeled_split if "data.unlabeled_split" in user else base.data.labeled_split
        if reads_unlabeled and "data.unlabeled_split" not in user:
            raise ConfigError("data.labeled_split is set but not data.unlabeled_split: give both")
        return (
            base.data.labeled_split,
            unlabeled,
            (
                f"data.labeled_split={base.data.labeled_split}"
                + (f", data.unlabeled_split={unlabeled}" if reads_unlabeled else "")
                + ": your override"
            ),
        )
    if source.name != "folder":
        fix = command("dualteacher", "split", "--dataset", source.name, "--data", shown, "--labeled", "1/16")
        raise DataError(
            f"the {source.name} layout has no lists of its own for --data: draw them, run: {fix}, then "
            f"add data.labeled_split=labeled_1-16_seed0 data.unlabeled_split=unlabeled_1-16_seed0"
        )
    return own_splits(source, shown, unlabeled=reads_unlabeled, val=base.data.val_split)


def _length(config: Config, minutes: float, run_dir: Path) -> tuple[int, str]:
    """Iterations that train about ``minutes`` at the probed step time of ``config`` (a fresh run,
    no warm start), and the sentence; the probe is stored in ``run_dir/probe.json`` and reused
    while the settings, device and threads are the same."""
    from dualteacher.experiments.probe import PROBE_TIMED, PROBE_WARMUP, device_name, iterations_for, step_seconds

    settings = {k: v for k, v in config.to_dict().items() if k != "run_dir"}
    key = {
        "method": config.method.name,
        "settings": settings,
        "device": device_name(),
        "threads": torch.get_num_threads(),
        "warmup": PROBE_WARMUP,
        "timed": PROBE_TIMED,
    }
    path = run_dir / "probe.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    if {k: stored.get(k) for k in key} == key:
        seconds, how = stored["s_per_iteration"], f"measured before, {path}"
    else:
        with tempfile.TemporaryDirectory(prefix="dualteacher-probe-") as scratch:
            seconds = step_seconds(dataclasses.replace(config, run_dir=scratch))
        how = f"{PROBE_TIMED} iterations timed after {PROBE_WARMUP}, {key['threads']} thread(s)"
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**key, "s_per_iteration": seconds}, indent=1))
    total = iterations_for(minutes, seconds)
    return total, (
        f"{total} iterations in all: --minutes {minutes:g} at {seconds:.3f} s per {config.method.name} "
        f"iteration ({how}); evaluation is not counted and a warm-up's supervised steps are cheaper, "
        f"so the run takes a little less"
    )


def plan_fitted(
    root: str,
    method: str,
    *,
    dataset: str = "folder",
    splits_dir: str | None = None,
    iterations: int | None = None,
    minutes: float | None = None,
    warmup: int | None = None,
    overrides: Sequence[str] = (),
) -> FittedRun:
    """The run of ``method`` on the data at ``root`` (see the module docstring); ``minutes`` trains
    a short probe first. Raises :class:`ConfigError` for bad options or overrides (a setting that
    an option sets, ``--iterations`` with ``--minutes``, a warm-up as long as the run) and
    :class:`DataError` for data that is not ready, each ending with the command that fixes it.
    """
    method_settings(method)  # an unknown method is named first
    user = override_keys(overrides)
    clash = sorted(user & set(OWN_KEYS))
    if clash:
        raise ConfigError(f"override {clash[0]}: train --data sets it; use {OWN_KEYS[clash[0]]}")
    if iterations is not None and minutes is not None:
        raise ConfigError("give --iterations or --minutes, not both")
    if (iterations is not None and iterations < 1) or (minutes is not None and minutes <= 0):
        raise ConfigError("--iterations and --minutes must be positive")
    if warmup is not None and warmup < 0:
        raise ConfigError(f"--warmup must be 0 (none) or a number of iterations, got {warmup}")
    if warmup and "method.init_from" in user:
        raise ConfigError("--warmup trains a warm-up to start from, method.init_from names one: give one of them")
    base = load_config(None, [*RECIPE, *overrides, f"method.name={method}"])
    source = open_source(dataset, root, splits_dir, ignore_index=base.data.ignore_index)
    reads_unlabeled = METHODS.get(method).uses_unlabeled
    labeled, unlabeled, splits_why = _splits(source, root, base, user, reads_unlabeled)
    adaptation = adapt_recipe(
        source, [labeled, *([unlabeled] if reads_unlabeled else [])], base.data.val_split, overrides
    )
    run_dir = Path(base.run_dir) if "run_dir" in user else default_run_dir(root, method)
    data = [
        f"data.dataset={json.dumps(dataset)}",
        *([f"data.splits_dir={json.dumps(str(splits_dir))}"] if splits_dir else []),
        *adaptation.overrides,
    ]

    def config(name: str, directory: Path, length: int, extra: Sequence[str]) -> Config:
        return recipe_config(root, labeled, unlabeled, name, directory, length, 0, [*data, *extra])

    if iterations is not None:
        total, length_why = iterations, f"{iterations} iterations in all (--iterations)"
    elif minutes is not None:
        fresh = [o for o in overrides if override_keys([o]).isdisjoint({"method.init_from", *_NOT_IN_WARMUP})]
        total, length_why = _length(config(method, run_dir, ITERATIONS, fresh), minutes, run_dir)
    else:
        total, length_why = ITERATIONS, f"{ITERATIONS} iterations in all, the recipe's (--iterations N or --minutes M)"
    if warmup is None:
        warmup = warmup_share(total) if reads_unlabeled and "method.init_from" not in user else 0
    if warmup >= total:
        raise ConfigError(
            f"--warmup {warmup} leaves none of the {total} iterations to {method}: give fewer, or more --iterations"
        )
    warmup_dir = run_dir / WARMUP_DIR
    main = config(method, run_dir, total - warmup, [*(warm_start(warmup_dir) if warmup else []), *overrides])
    first = None
    if warmup:
        kept = [
            o for o in overrides if not any(k.startswith("method.") or k in _NOT_IN_WARMUP for k in override_keys([o]))
        ]
        first = config(BASELINE, warmup_dir, warmup, kept)
        start_why = (
            f"warm start: {warmup} supervised iterations on {labeled} first ({warmup_dir}), then "
            f"{run_length(main)} of {method} from its student "
            "(method.init_from; --warmup N to change, 0: none)"
        )
    elif "method.init_from" in user:
        start_why = f"warm start: method.init_from={main.method.init_from}: your override"
    elif reads_unlabeled:
        start_why = f"warm start: none (--warmup 0); {method} starts from the pretrained encoder"
    else:
        start_why = f"warm start: none; {method} trains from the pretrained encoder (--warmup N for a warm-up)"
    if user & set(_NOT_IN_WARMUP[1:]):
        length_why += f"; with your train.epochs/train.iters_per_epoch, {method} trains {run_length(main)}"
    account = [
        splits_why,
        *adaptation.account,
        length_why,
        start_why,
        f"run_dir={main.run_dir}" + (": your override" if "run_dir" in user else " (run_dir=DIR to change)"),
    ]
    return FittedRun(main, first, account)


def train_fitted(
    plan: FittedRun, *, resume: bool = True, allow_changes: bool = False, progress: bool = True
) -> tuple[Config, dict[str, Any]]:
    """Train ``plan``: log its choices (one per line), train its warm-up (if any, always continuing
    its own checkpoint), then the method from the warm-up's student (``resume`` and ``allow_changes`` as in
    :func:`~dualteacher.training.loop.train`).

    Returns the settings of the last run trained and its final evaluation record: the warm-up's
    when it was interrupted (the record names the signal under ``"interrupted"``; the method did
    not start), else the method's. Raises as :func:`~dualteacher.training.loop.train` does.
    """
    from dualteacher.training.loop import train

    logger.info("recipe: " + "\n        ".join(plan.account))
    if plan.warmup is not None:
        logger.info(
            "training the warm-up: %d supervised iterations in %s", run_length(plan.warmup), plan.warmup.run_dir
        )
        record = train(plan.warmup, progress=progress)
        if "interrupted" in record:
            return plan.warmup, record
    logger.info(
        "training %s: %d iterations in %s", plan.config.method.name, run_length(plan.config), plan.config.run_dir
    )
    return plan.config, train(plan.config, resume=resume, allow_changes=allow_changes, progress=progress)
