"""Typed experiment settings: YAML in, dotted command-line overrides, validation, YAML out.

Every section is a dataclass; unknown keys and values of the wrong type are errors that
name the offending key (``train.epohcs``) and suggest the nearest known one (``train.epochs``),
so a typo never silently falls back to a default; a key from a YAML file is named with the
file and line. Everything but the ``method`` section is checked before any method (and so
PyTorch) is imported: see :func:`build_config`.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dualteacher.registry import DATASETS, EVAL_MODES, METHODS, TRACKERS, Registry, did_you_mean

SHIPPED_CONFIGS = "configs"
"""The package folder of the shipped experiment configs (``dualteacher/configs/*.yaml``)."""


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key, which is also
    :attr:`key` (dotted, ``train.epochs`` or ``data.scale_range[0]``; None when no one key is at fault)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def choice_check(key: str, value: str, choices: Iterable[str]) -> tuple[str, bool, str]:
    """The check (key, whether valid, what is valid) that ``value`` is one of ``choices``, for
    :meth:`MethodSettings.checks`; its message suggests the nearest choice."""
    choices = list(choices)
    hint = did_you_mean(value, choices)
    return key, value in choices, f"{value!r} is not one of {', '.join(choices)}" + (f"; {hint}" if hint else "")


def default_workers() -> int:
    """Data-loading processes per rank: the CPUs this process may use, shared among the ranks on
    this node (``LOCAL_WORLD_SIZE`` under torchrun), at most 8 and at least 1."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cpus // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))))


@dataclass
class DataConfig:
    """Where the data is, how it is read and weakly augmented, and how val images are predicted.

    ``dataset`` names a reader of :data:`~dualteacher.registry.DATASETS`; split lists
    live in ``splits_dir`` (empty: ``ROOT/splits`` for ``folder``, ``./splits/<dataset>`` for
    the benchmarks). Evaluation: ``eval_mode`` (:data:`~dualteacher.registry.EVAL_MODES`) with window
    ``eval_tile`` (default: ``crop_size``) and ``eval_stride`` (default: 2/3 of the tile),
    ``eval_flip`` and ``eval_scales`` test-time augmentation, and ``eval_resize`` = (long,
    short), a keep-ratio resize of every val image before prediction (mmseg's
    ``Resize(scale=(2048, 512), keep_ratio=True)``); see :mod:`dualteacher.inference.modes`.
    ``eval_window_batch`` is how many sliding windows run per forward pass (speed and memory
    only: the scores do not change).
    ``workers`` (data-loading processes per rank) defaults to :func:`default_workers`.
    ``ignore_index`` is the mask value of unlabelled pixels in the folder layout's files (e.g. 0
    when class 0 means "unlabelled"); it is mapped to 255 when a mask is read, and 255 is always
    ignored too. The standard benchmarks have their own convention and refuse any other value.
    """

    dataset: str = "folder"
    root: str = ""
    labeled_split: str = "labeled"
    unlabeled_split: str = "unlabeled"
    val_split: str = "val"
    crop_size: int = 64
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    ignore_index: int = 255
    workers: int = field(default_factory=default_workers)
    val_batch_size: int = 16
    splits_dir: str = ""
    eval_mode: str = "whole"
    eval_tile: int | None = None
    eval_stride: int | None = None
    eval_flip: bool = False
    eval_scales: tuple[float, ...] = (1.0,)
    eval_resize: tuple[int, int] | None = None
    eval_window_batch: int = 8


@dataclass
class ModelConfig:
    """The network; built by :func:`dualteacher.models.build.model_from_config` (SMP architectures:
    :func:`dualteacher.models.smp.build_model`)."""

    arch: str = "deeplabv3plus"
    encoder: str = "resnet50"
    weights: str | None = None
    output_stride: int = 16
    decoder_channels: int | None = None
    aspp_dropout: float = 0.0
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (linear warm-up, then poly decay to 0)."""

    name: str = "adamw"
    lr: float = 6e-5
    head_lr_mult: float = 10.0
    weight_decay: float = 0.01
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6
    poly_power: float = 1.0
    grad_clip: float | None = None


@dataclass
class MethodSettings:
    """The settings every method has: its registered ``name`` and the optional warm start.

    Each method declares its own settings as a subclass beside its step (its class attribute
    ``Settings``, with its paper's defaults); the ``method`` section of a config is read into the
    class of the method it names, so a setting that means nothing to that method is an error.
    ``init_from``: every network of the run starts from this earlier run's student
    (:mod:`dualteacher.training.warm_start`).
    """

    name: str = "supervised"
    init_from: str | None = None

    def checks(self) -> list[tuple[str, bool, str]]:
        """(key, whether its value is valid, what a valid value is) for each setting with a range
        or a choice; subclasses extend the list."""
        return []


@dataclass
class TrainConfig:
    """Length of the run, batch sizes, evaluation and what is kept.

    Without ``iters_per_epoch`` an epoch is one pass over the labelled set
    (``epoch_over: labeled``, the official Dual Teacher code) or over the unlabelled set
    (``epoch_over: unlabeled``, the UniMatch/U2PL protocol for VOC and Cityscapes).
    A training checkpoint is written at the end of every epoch, every ``checkpoint_every``
    iterations (0: epochs only) and at the end; the newest ``keep_checkpoints`` are kept.
    With ``nan_guard`` a step whose gradients are not finite is skipped and counted, and
    ``max_bad_steps`` such steps in a row stop the run. ``amp`` is the autocast precision on CUDA
    (``auto`` = bf16; ``fp16`` adds a checkpointed GradScaler; the CPU always trains in float32);
    ``channels_last`` stores the networks and input batches in NHWC memory order.
    ``loggers`` names the experiment trackers (:data:`~dualteacher.registry.TRACKERS`: tensorboard,
    csv, mlflow, wandb) that get the run's settings, scalars, pictures and best network besides
    ``metrics.jsonl``; ``metrics.csv`` is always written (see :mod:`dualteacher.training.trackers`).
    """

    epochs: int = 10
    iters_per_epoch: int | None = None
    batch_size: int = 8
    unlabeled_batch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    eval_every: int = 1
    log_every: int = 10
    keep: str = "best"
    probe_images: int = 16
    deterministic: bool = True
    epoch_over: str = "labeled"
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    nan_guard: bool = True
    max_bad_steps: int = 5
    amp: str = "auto"
    channels_last: bool = False
    loggers: tuple[str, ...] = ("tensorboard",)


@dataclass
class Config:
    """A whole experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    method: MethodSettings = field(default_factory=MethodSettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    run_dir: str = "runs/default"

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python view (tuples become lists) suitable for YAML/JSON."""
        return _plain(dataclasses.asdict(self))


_CHOICES: dict[str, tuple[str, ...] | Registry] = {
    "data.dataset": DATASETS,
    "data.eval_mode": EVAL_MODES,
    "train.epoch_over": ("labeled", "unlabeled"),
    "optim.name": ("adamw", "sgd"),
    "train.keep": ("best", "student", "teacher"),
    "train.amp": ("auto", "bf16", "fp16", "off"),
}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Convert ``value`` to ``annotation`` (a scalar, ``X | None`` or a tuple of them) or raise a
    ConfigError naming ``key``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(key, value, typing.get_args(annotation))
    if origin is tuple:
        return _coerce_tuple(key, value, typing.get_args(annotation))
    if annotation in _SCALARS:
        return _SCALARS[annotation](key, value)
    raise ConfigError(f"{key}: unsupported setting type {annotation!r}", key)


def _coerce_union(key: str, value: Any, args: tuple[Any, ...]) -> Any:
    """None where the union allows it, else the first member type that takes ``value``; the
    error of the first member otherwise."""
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _coerce(key, value, arg)
        except ConfigError as err:
            errors.append(str(err))
    raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}", key)


def _coerce_tuple(key: str, value: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A YAML list as ``tuple[X, ...]`` (any length) or ``tuple[X, Y]`` (that length), item by item."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list, got {value!r}", key)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}", key)
    return tuple(_coerce(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))


def _to_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: expected true/false, got {value!r}", key)


def _to_int(key: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{key}: expected an integer, got {value!r}", key)


def _to_float(key: str, value: Any) -> float:
    """Numbers, and numeric strings: YAML 1.1 reads ``1e-3`` (no dot) as a string."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ConfigError(f"{key}: expected a number, got {value!r}", key)


def _to_str(key: str, value: Any) -> str:
    """Strings and numbers as text; a bare YAML ``on``/``off`` (read as a boolean) where it is a choice."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    word = {True: "on", False: "off"}.get(value) if isinstance(value, bool) else None
    if word is not None and word in _CHOICES.get(key, ()):
        return word
    raise ConfigError(f"{key}: expected a string, got {value!r}", key)


_SCALARS: dict[type, Callable[[str, Any], Any]] = {bool: _to_bool, int: _to_int, float: _to_float, str: _to_str}


def _mapping(values: Any, prefix: str) -> dict[str, Any]:
    """``values`` when it is a mapping, else a ConfigError naming the section ``prefix``."""
    if not isinstance(values, dict):
        section = prefix.rstrip(".")
        raise ConfigError(f"{section or 'config'}: expected a mapping, got {values!r}", section or None)
    return values


def _first_unknown(values: dict[str, Any], known: set[str], prefix: str) -> tuple[str, str] | None:
    """The first key of ``values`` (alphabetically) that is not in ``known``, with the suggestion
    of the nearest known one ("" when none is close); None when every key is known."""
    unknown = sorted(set(values) - known)
    return (unknown[0], did_you_mean(unknown[0], known, prefix)) if unknown else None


def _build(cls: type, values: Any, prefix: str) -> Any:
    """An instance of the settings dataclass ``cls`` from the mapping ``values`` (the section at
    dotted ``prefix``); an unknown key is an error that suggests the nearest known one."""
    values = _mapping(values, prefix)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = _first_unknown(values, known, prefix)
    if unknown:
        key, hint = unknown
        raise ConfigError(
            f"unknown setting {prefix}{key}{f'; {hint}' if hint else ''} "
            f"(known in {prefix.rstrip('.') or 'config'}: {', '.join(sorted(known))})",
            prefix + key,
        )
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(f"{prefix}{name}", value, hint)
    return cls(**kwargs)


def method_settings_class(name: str) -> type[MethodSettings]:
    """The settings class of the registered method ``name`` (its ``Settings``; imports the method
    and PyTorch). Raises :class:`ConfigError` for an unknown name, suggesting the nearest."""
    if name not in METHODS:
        hint = did_you_mean(name, METHODS)
        raise ConfigError(
            f"method.name: {name!r} is not one of {', '.join(METHODS)}" + (f"; {hint}" if hint else ""), "method.name"
        )
    return METHODS.get(name).Settings


def _build_method(values: Any, prefix: str) -> MethodSettings:
    """The ``method`` section as the settings class of the method it names (default
    ``supervised``); a key that method does not declare is an error that suggests the nearest
    and lists its settings. The name is checked before the method is imported."""
    values = _mapping(values, prefix)
    name = _to_str(f"{prefix}name", values.get("name", MethodSettings.name))
    cls = method_settings_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = _first_unknown(values, known, prefix)
    if unknown:
        key, hint = unknown
        raise ConfigError(
            f"{prefix}{key} is not a setting of method {name!r}; {f'{hint} ' if hint else ''}"
            f"its settings: {', '.join(sorted(known))}",
            prefix + key,
        )
    return _build(cls, {**values, "name": name}, prefix)


def build_config(values: dict[str, Any]) -> Config:
    """A validated :class:`Config` from plain values (a YAML file's, overrides merged in).

    Two steps, so that most mistakes are reported before PyTorch is imported: every section but
    ``method`` is read and checked first (their settings and the registered names are known
    without importing anything heavy), then ``method.name`` is checked, and only then is the
    named method imported (with PyTorch) to read the ``method`` section into its own settings
    class and run its checks. Raises :class:`ConfigError` naming the first offending key.
    """
    values = _mapping(values, "")
    cfg = _build(Config, {key: value for key, value in values.items() if key != "method"}, "")
    _check(_section_checks(cfg))
    cfg.method = _build_method(values.get("method", {}), "method.")
    _check(_method_checks(cfg.method))
    return cfg


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``a.b=value`` into ``{"a": {"b": value}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value (e.g. train.epochs=40)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value: Any = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"{key}: cannot parse value {raw!r}: {err}") from err
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def validate(cfg: Config) -> Config:
    """Check value ranges and choices, then the method's own (:meth:`MethodSettings.checks`); raise
    ConfigError naming the key (the first check that fails)."""
    _check([*_section_checks(cfg), *_method_checks(cfg.method)])
    return cfg


def _check(checks: list[tuple[str, bool, str]]) -> None:
    """Raise a ConfigError for the first (key, valid, why) check that fails."""
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"{key}: {why}", key)


def _section_checks(cfg: Config) -> list[tuple[str, bool, str]]:
    """The choices and ranges of every section but ``method``."""
    choices = []
    for key, allowed in _CHOICES.items():
        section, name = key.split(".")
        choices.append(choice_check(key, getattr(getattr(cfg, section), name), allowed))
    return [*choices, _loggers_check(cfg.train.loggers), *_range_checks(cfg)]


def _loggers_check(loggers: tuple[str, ...]) -> tuple[str, bool, str]:
    """The check that every name of ``train.loggers`` is a registered tracker (the first unknown
    one is named, with the nearest registered one)."""
    unknown = [name for name in loggers if name not in TRACKERS]
    if not unknown:
        return "train.loggers", True, ""
    hint = did_you_mean(unknown[0], TRACKERS)
    return (
        "train.loggers",
        False,
        f"unknown tracker {unknown[0]!r} ({', '.join(TRACKERS)})" + (f"; {hint}" if hint else ""),
    )


def _method_checks(settings: MethodSettings) -> list[tuple[str, bool, str]]:
    """The method's own checks (:meth:`MethodSettings.checks`), keyed ``method.<setting>``."""
    return [(f"method.{name}", ok, why) for name, ok, why in settings.checks()]


def _range_checks(cfg: Config) -> list[tuple[str, bool, str]]:
    """(key, whether its value is in range, what the range is) for every bounded setting."""
    return [
        ("data.crop_size", cfg.data.crop_size >= 8, "must be >= 8"),
        ("data.workers", cfg.data.workers >= 0, "must be >= 0"),
        ("data.scale_range", 0 < cfg.data.scale_range[0] <= cfg.data.scale_range[1], "needs 0 < min <= max"),
        ("data.val_batch_size", cfg.data.val_batch_size >= 1, "must be >= 1"),
        ("data.ignore_index", 0 <= cfg.data.ignore_index <= 255, "must be a mask value in [0, 255]"),
        ("data.eval_tile", cfg.data.eval_tile is None or cfg.data.eval_tile >= 8, "must be >= 8"),
        (
            "data.eval_stride",
            cfg.data.eval_stride is None or 1 <= cfg.data.eval_stride <= (cfg.data.eval_tile or cfg.data.crop_size),
            "must be in [1, eval_tile]",
        ),
        (
            "data.eval_scales",
            len(cfg.data.eval_scales) >= 1 and all(s > 0 for s in cfg.data.eval_scales),
            "needs at least one scale, all > 0",
        ),
        (
            "data.eval_resize",
            cfg.data.eval_resize is None or min(cfg.data.eval_resize) >= 1,
            "needs [long, short] >= 1",
        ),
        ("data.eval_window_batch", cfg.data.eval_window_batch >= 1, "must be >= 1"),
        ("model.output_stride", cfg.model.output_stride in (8, 16, 32), "must be 8, 16 or 32"),
        ("optim.lr", cfg.optim.lr > 0, "must be > 0"),
        ("optim.head_lr_mult", cfg.optim.head_lr_mult > 0, "must be > 0"),
        ("optim.weight_decay", cfg.optim.weight_decay >= 0, "must be >= 0"),
        ("optim.warmup_iters", cfg.optim.warmup_iters >= 0, "must be >= 0"),
        ("train.epochs", cfg.train.epochs >= 1, "must be >= 1"),
        ("train.iters_per_epoch", cfg.train.iters_per_epoch is None or cfg.train.iters_per_epoch >= 1, "must be >= 1"),
        ("train.batch_size", cfg.train.batch_size >= 1, "must be >= 1"),
        ("train.unlabeled_batch_size", (cfg.train.unlabeled_batch_size or 1) >= 1, "must be >= 1"),
        ("train.eval_every", cfg.train.eval_every >= 1, "must be >= 1"),
        ("train.log_every", cfg.train.log_every >= 1, "must be >= 1"),
        ("train.probe_images", cfg.train.probe_images >= 0, "must be >= 0"),
        ("train.checkpoint_every", cfg.train.checkpoint_every >= 0, "must be >= 0 (0: at the end of every epoch only)"),
        ("train.keep_checkpoints", cfg.train.keep_checkpoints >= 1, "must be >= 1"),
        ("train.max_bad_steps", cfg.train.max_bad_steps >= 1, "must be >= 1"),
    ]


def shipped_configs() -> list[str]:
    """Names of the configs shipped in the package (``src/dualteacher/configs/<name>.yaml``), sorted."""
    folder = resources.files("dualteacher") / SHIPPED_CONFIGS
    return sorted(entry.name[: -len(".yaml")] for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def config_text(path: str | Path) -> tuple[str, str]:
    """The YAML text of an experiment file and where it came from: ``path`` itself when it is a
    file, else the shipped config it names (``voc_classic_r101``, ``voc_classic_r101.yaml`` or
    ``configs/voc_classic_r101.yaml``, the path they had in a checkout), read with
    :mod:`importlib.resources` so that it works from an installed wheel.

    Raises :class:`ConfigError` naming the path and the shipped configs when neither exists.
    """
    path = Path(path)
    if path.is_file():
        return path.read_text(encoding="utf-8"), str(path)
    parent = path.parent.as_posix()
    if parent in (".", SHIPPED_CONFIGS) and path.suffix in ("", ".yaml"):
        name = path.name[: -len(".yaml")] if path.suffix == ".yaml" else path.name
        shipped = resources.files("dualteacher") / SHIPPED_CONFIGS / f"{name}.yaml"
        if shipped.is_file():
            return shipped.read_text(encoding="utf-8"), f"{SHIPPED_CONFIGS}/{name}.yaml (shipped)"
    raise ConfigError(f"config file {path} does not exist; shipped configs: {', '.join(shipped_configs())}")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML experiment file (optional: a path or a shipped config's name, see
    :func:`config_text`), apply ``key=value`` overrides and validate (:func:`build_config`).

    Raises :class:`ConfigError`; one about a key that the file sets (and no override replaces)
    starts with ``FILE:LINE:``.
    """
    values: dict[str, Any] = {}
    text = source = None
    if path is not None:
        text, source = config_text(path)
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{source}: not valid YAML: {err}") from err
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{source}: top level must be a mapping of sections")
        values = loaded or {}
    given: dict[str, Any] = {}
    for override in overrides:
        given = _merge(given, parse_override(override))
    try:
        return build_config(_merge(values, given))
    except ConfigError as err:
        key = None if err.key is None else err.key.partition("[")[0]
        if text is None or key is None or _sets(given, key):
            raise
        line = yaml_line(text, key)
        if line is None:
            raise
        raise ConfigError(f"{source}:{line}: {err}", err.key) from err


def _sets(values: dict[str, Any], key: str) -> bool:
    """Whether the nested ``values`` hold the dotted ``key``."""
    for part in key.split("."):
        if not isinstance(values, dict) or part not in values:
            return False
        values = values[part]
    return True


def yaml_line(text: str, key: str) -> int | None:
    """The line (1-based) of the dotted ``key`` (``train.epochs``) in the YAML ``text``, None when
    the text does not set it."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for part in key.split("."):
        if not isinstance(node, yaml.MappingNode):
            return None
        match = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
        if match is None:
            return None
        line, node = match[0].start_mark.line + 1, match[1]
    return line


LEGACY_METHOD_KEYS = frozenset(
    {
        "name",
        "threshold",
        "threshold_mode",
        "unsup_weight",
        "icl_weight",
        "student_drop_path",
        "num_teachers",
        "shift_period",
        "mixings",
        "ema_momentum",
        "ema_warmup",
        "restart_per_shift",
        "ema_buffers",
        "teacher_init",
        "cutmix_p",
        "fp_dropout",
        "init_from",
    }
)
"""The keys of the one ``method`` section every method shared before each declared its own
settings (dualteacher 0.1.0): a checkpoint header holding all of them was written then."""


def migrate_method(values: dict[str, Any], iters_per_epoch: int | None) -> dict[str, Any]:
    """A ``method`` section written with :data:`LEGACY_METHOD_KEYS` as the method's own settings.

    The keys the method does not declare are dropped (it never read them); a single-mixing method
    keeps the first of ``mixings``, the one it used; Dual Teacher's ``shift_period`` of epochs becomes ``shift``: ``epoch`` for 1, else that many epochs of
    ``iters_per_epoch`` iterations. Sections of today's form are returned unchanged. Raises
    :class:`ConfigError` when a shift of several epochs of unknown length cannot be converted.
    """
    if not set(values) >= LEGACY_METHOD_KEYS:
        return values
    known = {f.name for f in dataclasses.fields(method_settings_class(values["name"]))}
    out = {key: value for key, value in values.items() if key in known}
    if values["name"] != "dual_teacher" and "mixings" in known:
        out["mixings"] = values["mixings"][:1]
    if "shift" in known:
        period = values["shift_period"]
        if period != 1 and iters_per_epoch is None:
            raise ConfigError(
                f"method.shift_period={period} of a checkpoint whose epochs have no fixed length "
                "(train.iters_per_epoch) cannot be converted to method.shift"
            )
        out["shift"] = "epoch" if period == 1 else period * iters_per_epoch
    return out


def config_from_dict(values: dict[str, Any]) -> Config:
    """Rebuild a validated Config from :meth:`Config.to_dict` output, of this version or an earlier
    one (:func:`migrate_method`)."""
    if isinstance(values.get("method"), dict):
        iters = values.get("train", {}).get("iters_per_epoch")
        values = {**values, "method": migrate_method(values["method"], iters)}
    return build_config(values)


def config_yaml(cfg: Config) -> str:
    """The resolved configuration as YAML text (sections in declaration order), which
    :func:`load_config` reads back to an equal Config."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def with_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """A copy of ``cfg`` with ``key=value`` overrides applied and validated again (``cfg`` itself
    is not changed). Raises :class:`ConfigError` as :func:`load_config` does."""
    values = cfg.to_dict()
    for text in overrides:
        values = _merge(values, parse_override(text))
    return config_from_dict(values)


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved configuration as YAML (:func:`config_yaml`)."""
    Path(path).write_text(config_yaml(cfg))
