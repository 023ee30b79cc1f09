"""The one shared training recipe: model, input size, optimiser, schedule and batch.

Every method trains with :data:`RECIPE` plus its own settings, the ``recipe_settings`` of its
class (:func:`method_settings`); the demo, the shipped ``dualteacher/configs/digits_*.yaml``, ``dualteacher
compare`` and the benchmarks all build their settings with :func:`recipe_config`.
:func:`adapt_recipe` fits the recipe to the data it is given (the crop is never larger than the
smallest training image, a val batch holds about as many pixels as the recipe's) and says what
it chose.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from dualteacher.config import Config, ConfigError, load_config, method_settings_class
from dualteacher.data.core import DataError
from dualteacher.data.source import DataSource
from dualteacher.registry import METHODS

ITERATIONS = 1000
WARMUP_ITERATIONS = 300
"""The benchmark's supervised warm start: 300 of its 1,000 iterations are one supervised run on the
labelled split that every method continues from (``dualteacher compare --warmup``, the demo)."""
ITERS_PER_EPOCH = 50
MIN_CROP = 8

RECIPE = [
    "model.arch=deeplabv3plus",
    "model.encoder=tu-tf_efficientnet_lite0",
    "model.weights=efficientnet-lite0",
    "model.decoder_channels=64",
    "model.aspp_dropout=0.0",
    "data.crop_size=128",
    "data.scale_range=[1.0, 1.0]",
    "data.workers=1",
    "data.val_batch_size=25",
    "optim.name=adamw",
    "optim.lr=0.001",
    "optim.head_lr_mult=10",
    "optim.weight_decay=0.01",
    "optim.warmup_iters=50",
    "train.batch_size=8",
    "train.unlabeled_batch_size=8",
    f"train.iters_per_epoch={ITERS_PER_EPOCH}",
    "train.eval_every=2",
    "train.log_every=10",
    "train.probe_images=16",
]
BASELINE = "supervised"
"""The method the others are measured against; with every train image labelled, the upper bound."""
UPPER_BOUND = "supervised_all"
"""The run (demo) and variant (comparison) of :data:`BASELINE` with every train image labelled."""


def method_settings(method: str) -> list[str]:
    """The recipe's own settings of ``method``: its class's ``recipe_settings`` (imported here,
    with PyTorch). Raises :class:`ConfigError` when ``method`` is not a registered method."""
    if method not in METHODS:
        raise ConfigError(f"method.name: {method!r} is not one of {', '.join(METHODS)}")
    return list(METHODS.get(method).recipe_settings)


def schedule(iterations: int) -> list[str]:
    """``train.epochs`` and ``train.iters_per_epoch`` for a run of ``iterations`` iterations.

    Epochs of about :data:`ITERS_PER_EPOCH` iterations whose product is within a few iterations
    of ``iterations`` (an equal-wall-clock budget is not rounded to whole recipe epochs).
    """
    epochs = max(1, round(iterations / ITERS_PER_EPOCH))
    return [f"train.epochs={epochs}", f"train.iters_per_epoch={max(1, round(iterations / epochs))}"]


def run_length(config: Config) -> int:
    """Iterations of a run of ``config``, a recipe run (the schedule :func:`schedule` wrote) (ConfigError when an override unset
    ``train.iters_per_epoch``: the recipe counts iterations, not passes over the data)."""
    if config.train.iters_per_epoch is None:
        raise ConfigError("train.iters_per_epoch=null: a recipe run needs a number of iterations per epoch")
    return config.train.epochs * config.train.iters_per_epoch


def recipe_config(
    data_root: Path | str,
    labeled: str,
    unlabeled: str,
    method: str,
    run_dir: Path | str,
    iterations: int,
    seed: int,
    extra: Sequence[str] = (),
) -> Config:
    """The recipe for one run of ``method`` on the folder layout at ``data_root``.

    Order: :data:`RECIPE`, the data and split names, the method's settings, the schedule, seed and
    run directory, then ``extra`` (``key=value``; other datasets, adaptations, user overrides).
    Raises :class:`~dualteacher.config.ConfigError` naming a bad key.
    """
    return load_config(
        None,
        [
            *RECIPE,
            f"data.root={json.dumps(str(data_root))}",
            f"data.labeled_split={json.dumps(labeled)}",
            f"data.unlabeled_split={json.dumps(unlabeled)}",
            f"method.name={method}",
            *method_settings(method),
            *schedule(iterations),
            f"train.seed={seed}",
            f"run_dir={json.dumps(str(run_dir))}",
            *extra,
        ],
    )


def warm_start(run_dir: Path | str) -> list[str]:
    """The override that starts every network of a run from the student of the finished run in
    ``run_dir`` (``method.init_from``, :mod:`dualteacher.training.warm_start`): how the demo,
    ``dualteacher compare`` and ``dualteacher train --data`` continue from a supervised warm-up."""
    return [f"method.init_from={json.dumps(str(run_dir))}"]


def warmup_share(iterations: int) -> int:
    """The supervised warm-up's part of ``iterations`` in all: the recipe's share,
    :data:`WARMUP_ITERATIONS` of :data:`ITERATIONS` (3/10), rounded, leaving at least 1 iteration."""
    return max(0, min(round(iterations * WARMUP_ITERATIONS / ITERATIONS), iterations - 1))


@dataclass(frozen=True)
class Adaptation:
    """What :func:`adapt_recipe` chose: ``overrides`` (``key=value``, to go after the recipe and
    before the user's overrides) and ``account``, one sentence per setting it looked at."""

    overrides: list[str]
    account: list[str]


def for_method(method: str, overrides: Sequence[str]) -> list[str]:
    """``overrides`` without the ``method.*`` settings that ``method`` does not have: settings
    given for every run of a comparison reach the methods they mean something to (imports the
    method). Raises :class:`ConfigError` for an unknown method."""
    known = {f"method.{f.name}" for f in dataclasses.fields(method_settings_class(method))}
    return [o for o in overrides if not o.strip().startswith("method.") or override_keys([o]) <= known]


def without_method_settings(overrides: Sequence[str]) -> list[str]:
    """``overrides`` without any ``method.*`` setting (for what reads no method's settings)."""
    return [o for o in overrides if not o.strip().startswith("method.")]


def override_keys(overrides: Sequence[str]) -> set[str]:
    """The dotted keys that ``key=value`` overrides set."""
    return {text.split("=", 1)[0].strip() for text in overrides}


def _sizes(paths: Sequence[Path]) -> list[tuple[int, int, Path]]:
    """(width, height, path) of every image, read from the file headers (nothing decoded)."""
    sizes = []
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.append((*image.size, path))
        except OSError as error:
            raise DataError(f"cannot read the size of {path}: {error}") from error
    return sizes


def _crop(base: Config, train: list[tuple[int, int, Path]], user_set: bool) -> tuple[int, str]:
    """The crop size and the sentence explaining it."""
    width, height, path = min(train, key=lambda s: min(s[0], s[1]))
    side = min(width, height)
    smallest = f"the smallest train image side is {side} px ({path.name}, {width}x{height})"
    if user_set:
        return base.data.crop_size, f"data.crop_size={base.data.crop_size}: your override; {smallest}"
    if side < MIN_CROP:
        raise DataError(f"{path} is {width}x{height}: training crops need images of at least {MIN_CROP} px a side")
    if base.data.crop_size <= side:
        return base.data.crop_size, f"data.crop_size={base.data.crop_size}: the recipe's; {smallest}"
    return side, f"data.crop_size={side}: the recipe's {base.data.crop_size} px would not fit; {smallest}"


def _val_batch(base: Config, recipe: Config, val: list[tuple[int, int, Path]], user_set: bool) -> tuple[int, str]:
    """The val batch size and the sentence explaining it: a padded val batch of the largest val
    image holds at most the recipe's val pixels (val_batch_size crops of crop_size²)."""
    width, height, path = max(val, key=lambda s: s[0] * s[1])
    largest = f"the largest val image is {width}x{height} ({path.name})"
    if user_set:
        return base.data.val_batch_size, f"data.val_batch_size={base.data.val_batch_size}: your override; {largest}"
    budget = recipe.data.val_batch_size * recipe.data.crop_size**2
    size = max(1, min(recipe.data.val_batch_size, budget // (width * height)))
    why = (
        f"the recipe's {recipe.data.val_batch_size}"
        if size == recipe.data.val_batch_size
        else f"the recipe's {recipe.data.val_batch_size} images would not keep a val batch within its {budget:,} pixels"
    )
    return size, f"data.val_batch_size={size}: {why}; {largest}"


def adapt_recipe(
    source: DataSource, train_splits: Sequence[str], val_split: str, user_overrides: Sequence[str] = ()
) -> Adaptation:
    """Fit :data:`RECIPE` to the images of ``train_splits`` and ``val_split`` of ``source``.

    ``data.crop_size`` becomes the smallest side of any train image when the recipe's crop is
    larger; ``data.val_batch_size`` shrinks so that a val batch of the largest val image holds no
    more pixels than the recipe's. Settings in ``user_overrides`` are kept (and reported as
    yours). Reads only file headers. Raises :class:`DataError` naming an unreadable file, an
    image too small to crop, or an empty split.
    """
    recipe = load_config(None, RECIPE)
    base = load_config(None, [*RECIPE, *without_method_settings(user_overrides)])
    user = override_keys(user_overrides)
    found = {}
    for role, splits in (("train", list(dict.fromkeys(train_splits))), ("val", [val_split])):
        ids = sorted({i for split in splits for i in source.split_ids(split)})
        if not ids:
            raise DataError(f"{source.name} at {source.root}: the {role} split(s) {', '.join(splits)} list no image")
        found[role] = _sizes(source.files(ids, labeled=False).images)
    crop, crop_why = _crop(base, found["train"], "data.crop_size" in user)
    val_batch, val_why = _val_batch(base, recipe, found["val"], "data.val_batch_size" in user)
    overrides = [f"data.crop_size={crop}", f"data.val_batch_size={val_batch}"]
    return Adaptation([o for o in overrides if override_keys([o]).isdisjoint(user)], [crop_why, val_why])
