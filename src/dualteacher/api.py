"""The Python API: what the ``dualteacher`` command does, from Python.

::

    from dualteacher import compare, load_config, load_model, train

    run = train(data="mydata", method="mean_teacher", iterations=300)   # dualteacher train --data ...
    model = load_model(run.best)
    mask = model.predict("mydata/images/a.jpg")                         # [H, W] class indices

:func:`train` and :func:`compare` are defined here; :func:`~dualteacher.inference.model.load_model`
and :func:`~dualteacher.config.load_config` are re-exported by the package as they are. Messages
go to the ``dualteacher`` logger (:mod:`dualteacher.logs`); progress bars to stderr unless
``progress=False``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from dualteacher.config import Config, load_config, with_overrides

if TYPE_CHECKING:
    from dualteacher.experiments.compare import CompareOptions, Comparison
    from dualteacher.inference.model import LoadedModel


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns: the settings of the run it trained last and that run's final
    evaluation record (``{"student/miou": 0.61, "student/iou": [...], "iteration": 300, ...}``,
    one ``<network>/...`` group per network evaluated; ``{}`` when the run never evaluated).

    After a warm-up that was interrupted, ``config`` is the warm-up's (the method did not start).
    """

    config: Config
    record: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        """The run's directory (``config.run_dir``)."""
        return Path(self.config.run_dir)

    @property
    def best(self) -> Path:
        """``run_dir/best.safetensors``: the network with the best val mIoU (among those
        ``train.keep`` allows), for :func:`~dualteacher.inference.model.load_model`. Written at the
        first evaluation."""
        return self.run_dir / "best.safetensors"

    @property
    def miou(self) -> float | None:
        """The student's val mIoU at the last evaluation, in [0, 1] (None: no evaluation yet)."""
        value = self.record.get("student/miou")
        return None if value is None else float(value)

    @property
    def interrupted(self) -> str | None:
        """The signal that stopped the run (``"SIGINT"``, ``"SIGTERM"``), None when it finished;
        the same call again continues it from its checkpoint."""
        return self.record.get("interrupted")

    def load_model(self, device: str = "cpu") -> LoadedModel:
        """The network of :attr:`best` on ``device``. Raises
        :class:`~dualteacher.checkpoint.CheckpointError` when the run wrote none (it never evaluated)."""
        from dualteacher.inference.model import load_model

        return load_model(self.best, device=device)


def _words(name: str, values: Sequence[str]) -> list[str]:
    """``values`` as a list, refusing a bare string (a Sequence of characters)."""
    if isinstance(values, str):
        raise TypeError(f"{name} takes a list of strings, e.g. [{values!r}], not a string")
    return list(values)


@overload
def train(
    config: Config | str | Path,
    overrides: Sequence[str] = (),
    *,
    resume: bool = True,
    allow_changes: bool = False,
    progress: bool = True,
) -> TrainResult: ...


@overload
def train(
    *,
    data: str | Path,
    method: str,
    iterations: int | None = None,
    minutes: float | None = None,
    warmup: int | None = None,
    overrides: Sequence[str] = (),
    dataset: str = "folder",
    splits_dir: str | None = None,
    resume: bool = True,
    allow_changes: bool = False,
    progress: bool = True,
) -> TrainResult: ...


def train(
    config: Config | str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    data: str | Path | None = None,
    method: str | None = None,
    iterations: int | None = None,
    minutes: float | None = None,
    warmup: int | None = None,
    dataset: str | None = None,
    splits_dir: str | None = None,
    resume: bool = True,
    allow_changes: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train (or continue) a run; two forms, as ``dualteacher train``.

    ``train(config, overrides)``: the run of ``config``, a :class:`~dualteacher.config.Config`,
    the path of a YAML file or the name of a shipped config (``"digits_mean_teacher"``), with
    ``key=value`` overrides applied (``["train.epochs=4", "run_dir=runs/mt"]``).

    ``train(data=ROOT, method=NAME, iterations=N)``: ``dualteacher train --data ROOT --method NAME``,
    the shared recipe fitted to the folder that ``dualteacher init`` prepared
    (:mod:`dualteacher.experiments.fitted`: its choices are logged): ``iterations`` in all, or as
    many as take about ``minutes`` (a float, from a timed probe), or the recipe's 1,000; for a
    method that reads unlabelled images a supervised warm-up of ``warmup`` iterations (default
    3/10 of the length, 0: none) trains first in ``RUN_DIR/warmup``. The run directory is
    ``runs/<folder name>_<method>`` unless an override sets ``run_dir``. ``dataset`` and
    ``splits_dir`` name another layout, as ``--dataset`` and ``--splits-dir`` do.

    With ``resume`` (default) a checkpoint in the run directory is continued, so the same call
    again finishes an interrupted run and trains nothing once it is done; settings that differ
    from the checkpoint's raise :class:`~dualteacher.training.resume.ResumeError` unless every
    difference is safe and ``allow_changes``. ``resume=False`` starts at iteration 0 and replaces
    the run's checkpoints. ``progress=False`` hides the progress bars.

    Raises TypeError for a mix of the two forms, :class:`~dualteacher.config.ConfigError` for bad
    settings and :class:`~dualteacher.data.core.DataError` for data that cannot be trained on,
    before anything trains; each message names what to change. SIGINT/SIGTERM stop the run with a
    checkpoint: see :attr:`TrainResult.interrupted`.
    """
    overrides = _words("overrides", overrides)
    if data is None:
        fitted = {
            "method": method,
            "iterations": iterations,
            "minutes": minutes,
            "warmup": warmup,
            "dataset": dataset,
            "splits_dir": splits_dir,
        }
        given = [name for name, value in fitted.items() if value is not None]
        if config is None:
            raise TypeError(
                "train() needs a config (a Config, a YAML path or a shipped config name) or data=ROOT and method=NAME"
            )
        if given:
            raise TypeError(
                f"train(): {given[0]}= goes with data=ROOT, method=NAME (the built-in recipe); with a "
                f"config give overrides instead, e.g. data.root=... or train.epochs=..."
            )
        cfg = (
            (with_overrides(config, overrides) if overrides else config)
            if isinstance(config, Config)
            else load_config(config, overrides)
        )
        from dualteacher.training.loop import train as train_config

        return TrainResult(cfg, train_config(cfg, resume=resume, allow_changes=allow_changes, progress=progress))
    if config is not None:
        raise TypeError("train() takes a config or data=ROOT, not both: with a config set data.root in overrides")
    if method is None:
        from dualteacher.registry import METHODS

        raise TypeError(f"train(data=...) needs method=NAME, one of {', '.join(METHODS)}")
    from dualteacher.experiments.fitted import plan_fitted, train_fitted

    plan = plan_fitted(
        str(data),
        method,
        dataset=dataset or "folder",
        splits_dir=splits_dir,
        iterations=iterations,
        minutes=minutes,
        warmup=warmup,
        overrides=overrides,
    )
    trained, record = train_fitted(plan, resume=resume, allow_changes=allow_changes, progress=progress)
    return TrainResult(trained, record)


@overload
def compare(options: CompareOptions, /) -> Comparison: ...


@overload
def compare(
    *,
    data: str | Path,
    labeled: str | Sequence[str],
    out: str | Path,
    methods: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    iterations: int | None = None,
    minutes: float | None = None,
    budgets: Sequence[str] | None = None,
    upper_bound: bool = False,
    warmup: int | None = None,
    jobs: int = 1,
    runs: str | Path | None = None,
    overrides: Sequence[str] = (),
    dataset: str = "folder",
    splits_dir: str | None = None,
    report_only: bool = False,
) -> Comparison: ...


def compare(options: CompareOptions | None = None, /, **keywords: Any) -> Comparison:
    """``dualteacher compare``: every method trained with one recipe on your data, answered with a
    table (``OUT/table.md``, ``OUT/summary.json``, figures; see :mod:`dualteacher.experiments.compare`).

    Give a :class:`~dualteacher.experiments.compare.options.CompareOptions`, or its fields as keywords,
    named as the command's options:

    * ``data`` (the dataset root), ``labeled`` (label budgets: ``"masked"``, the train images that
      have a mask file, or fractions / counts of the train split, ``["1/16", "1/8"]``), ``out``
      (the output folder): required;
    * ``methods`` (default: every registered method), ``variants`` (extra ones, e.g.
      ``"dual_teacher_persistent"``), ``seeds`` (default 0, 1, 2), ``upper_bound``;
    * the length after the warm-up: ``iterations``, or ``minutes`` of Dual Teacher training (a
      float), or the recipe's; ``warmup`` supervised iterations first (default 300, 0: none);
      ``budgets`` ``["iterations", "time"]`` also gives every method Dual Teacher's training time;
    * ``jobs`` (runs at a time), ``runs`` (their folder, default ``OUT/runs``), ``overrides``
      (``key=value`` for every run), ``dataset``/``splits_dir`` (another layout), ``report_only``.

    Finished runs in ``out`` are reused and interrupted ones resumed, so the same call again
    trains only what is missing. Returns the :class:`~dualteacher.experiments.compare.options.Comparison`
    (the summary, and the runs that failed). Raises TypeError for an unknown keyword or both forms,
    :class:`~dualteacher.config.ConfigError` / :class:`~dualteacher.data.core.DataError` for bad
    options, overrides or data, before any run starts.
    """
    from dualteacher.experiments.compare import CompareOptions
    from dualteacher.experiments.compare import compare as run_comparison

    if options is not None:
        if keywords:
            raise TypeError("compare() takes a CompareOptions or keywords, not both")
        return run_comparison(options)
    labeled = keywords.pop("labeled", None)
    if labeled is None:
        raise TypeError("compare() needs labeled=, e.g. 'masked' (the images that have a mask) or ['1/16']")
    given = {key: value for key, value in keywords.items() if value is not None}
    for key in ("methods", "variants", "budgets", "overrides"):
        if key in given:
            given[key] = _words(key, given[key])
    if "seeds" in given:
        given["seeds"] = list(given["seeds"])
    fractions = [labeled] if isinstance(labeled, str) else _words("labeled", labeled)
    return run_comparison(CompareOptions(fractions=fractions, **given))
