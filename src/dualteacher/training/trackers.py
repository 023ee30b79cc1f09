"""Experiment trackers: where a run's settings, scalars, pictures and files go besides ``metrics.jsonl``.

A tracker is any class with the methods of :class:`Tracker`, registered by name in
:data:`dualteacher.registry.TRACKERS` and chosen with ``train.loggers`` (default
``[tensorboard]``); the CSV log (``metrics.csv``) is always written. Built in:

- ``tensorboard``: ``RUN_DIR/tensorboard`` (scalars and pictures);
- ``csv``: ``RUN_DIR/metrics.csv``, one row per scalar: ``iteration,name,value,time``;
- ``mlflow`` (``pip install 'dualteacher[mlflow]'``): a run in ``$MLFLOW_TRACKING_URI``, by
  default the SQLite store ``sqlite:///<parent of RUN_DIR>/mlflow.db`` with artifacts in
  ``<parent of RUN_DIR>/mlartifacts``; experiment ``$MLFLOW_EXPERIMENT_NAME`` (default ``dualteacher``);
- ``wandb`` (``pip install 'dualteacher[wandb]'``): a W&B run in project ``$WANDB_PROJECT``
  (default ``dualteacher``), its local files under ``$WANDB_DIR`` (default ``RUN_DIR``);
  ``WANDB_MODE=offline`` keeps it on disk for a later ``wandb sync``.

Only rank 0 tracks. What a tracker needs to continue its run (MLflow's and W&B's run ids) is
kept in ``RUN_DIR/trackers.json``, so a resumed run goes on in the same tracker run.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from dualteacher.config import Config, ConfigError
from dualteacher.environment import FILE as ENVIRONMENT_FILE
from dualteacher.registry import TRACKERS

logger = logging.getLogger(__name__)

STATE_FILE = "trackers.json"
ALWAYS = ("csv",)
"""Trackers every run has, whatever ``train.loggers`` lists."""
FINISHED, FAILED = "finished", "failed"


class TrackerError(ConfigError):
    """A tracker in ``train.loggers`` cannot run (its package is missing, or it failed to start)."""


class Tracker(Protocol):
    """What a run tells a tracker. ``requires`` names the modules it imports and ``install`` the
    command that installs them (checked before training by :func:`check_trackers`)."""

    requires: ClassVar[tuple[str, ...]]
    install: ClassVar[str]

    def start(self, run_dir: Path, resume: Mapping[str, Any] | None, iteration: int) -> dict[str, Any]:
        """Open the tracker's run for ``run_dir``, continuing the one ``resume`` describes (what an
        earlier :meth:`start` returned; None: a new run). ``iteration`` is where this session
        starts: anything recorded after it belongs to iterations about to be redone. Returns what
        continues the run later (JSON-able; empty when there is nothing to continue)."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        """The run's settings, as nested :meth:`Config.to_dict` sections."""

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Scalars named like ``train/loss`` or ``student/miou`` at iteration ``step``."""

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """An ``[H, W, 3]`` uint8 picture at iteration ``step``."""

    def log_artifact(self, path: Path) -> None:
        """A file of the run (``environment.json``, ``best.safetensors``)."""

    def finish(self, status: str) -> None:
        """Close the run: ``"finished"`` (or stopped, to be resumed) or ``"failed"``."""


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"epochs": 2}}`` as ``{"train.epochs": 2}``."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, Mapping):
            out.update(flat_params(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class TensorBoardTracker:
    """Scalars and pictures in ``RUN_DIR/tensorboard`` (``tensorboard --logdir RUN_DIR``)."""

    requires: ClassVar[tuple[str, ...]] = ("tensorboard",)
    install: ClassVar[str] = "pip install tensorboard"

    def start(self, run_dir: Path, resume: Mapping[str, Any] | None, iteration: int) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter

        # events after `iteration` (written before an interruption) are hidden: those iterations are redone
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=iteration + 1)
        return {}

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Nothing: the settings are in ``config.yaml`` beside the events."""

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.writer.add_image(tag, image, step, dataformats="HWC")

    def log_artifact(self, path: Path) -> None:
        """Nothing: TensorBoard keeps no files."""

    def finish(self, status: str) -> None:
        self.writer.close()


class CsvTracker:
    """``RUN_DIR/metrics.csv``: a header, then one row per scalar, ``iteration,name,value,time``
    (``time``: Unix seconds), in the order logged. Long rather than wide, so that a method's own
    scalars need no new column; ``pandas.read_csv(...).pivot_table(index="iteration",
    columns="name", values="value")`` makes the wide table."""

    requires: ClassVar[tuple[str, ...]] = ()
    install: ClassVar[str] = ""
    FILE = "metrics.csv"
    HEADER = ("iteration", "name", "value", "time")

    def start(self, run_dir: Path, resume: Mapping[str, Any] | None, iteration: int) -> dict[str, Any]:
        self.path = run_dir / self.FILE
        kept: list[list[str]] = []
        if self.path.is_file():  # rows after `iteration` belong to iterations about to be redone
            with self.path.open(newline="") as fh:
                kept = [row for row in list(csv.reader(fh))[1:] if row and int(row[0]) <= iteration]
        with self.path.open("w", newline="") as fh:
            csv.writer(fh).writerows([self.HEADER, *kept])
        self.file = self.path.open("a", newline="")
        self.writer = csv.writer(self.file)
        return {}

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Nothing: the settings are in ``config.yaml``."""

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        now = f"{time.time():.3f}"
        self.writer.writerows([step, name, repr(value), now] for name, value in metrics.items())
        self.file.flush()

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """Nothing: pictures are PNG files under ``pictures/``."""

    def log_artifact(self, path: Path) -> None:
        """Nothing: the files are in the run directory already."""

    def finish(self, status: str) -> None:
        self.file.close()


def _default_mlflow_store(run_dir: Path) -> tuple[str, str]:
    """The SQLite store beside the run directory, and its artifact root (as URIs): every run
    directory under one folder (``runs/``) shares one store, as one MLflow UI."""
    folder = run_dir.resolve().parent
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "mlartifacts").as_uri()


class MlflowTracker:
    """A run in an MLflow tracking store, through :class:`mlflow.tracking.MlflowClient`.

    The store is ``$MLFLOW_TRACKING_URI``, else the one the run started in (``trackers.json``),
    else :func:`_default_mlflow_store`. The settings are the run's parameters (``train.epochs``),
    the scalars its metrics, the pictures time-stepped images. MLflow refuses to change a
    parameter, so a run resumed with other settings records each change as the tag
    ``changed.<key>`` (``old -> new from iteration N``).
    """

    requires: ClassVar[tuple[str, ...]] = ("mlflow",)
    install: ClassVar[str] = "pip install 'dualteacher[mlflow]'"

    def start(self, run_dir: Path, resume: Mapping[str, Any] | None, iteration: int) -> dict[str, Any]:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        resume = resume or {}
        default_uri, default_artifacts = _default_mlflow_store(run_dir)
        uri = os.environ.get("MLFLOW_TRACKING_URI") or resume.get("tracking_uri") or default_uri
        try:
            self.client, self.iteration = MlflowClient(tracking_uri=uri), iteration
            self.run_id = self._continued(uri, resume.get("run_id")) or self._created(
                run_dir, uri == default_uri, default_artifacts
            )
        except MlflowException as err:
            raise TrackerError(f"train.loggers: mlflow could not start a run in {uri}: {err}") from err
        return {"run_id": self.run_id, "tracking_uri": uri}

    def _continued(self, uri: str, run_id: str | None) -> str | None:
        """``run_id``, marked running again, when the store has it (None: it has not; warned)."""
        from mlflow.exceptions import MlflowException

        if not run_id:
            return None
        try:
            if self.client.get_run(run_id).info.lifecycle_stage == "active":
                self.client.update_run(run_id, status="RUNNING")
                return run_id
        except MlflowException as err:
            if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
        logger.warning(f"warning: MLflow run {run_id} is not in {uri} (or was deleted); starting a new MLflow run")
        return None

    def _created(self, run_dir: Path, default_store: bool, default_artifacts: str) -> str:
        """A new run named after ``run_dir`` in experiment ``$MLFLOW_EXPERIMENT_NAME`` (created
        when missing, with its artifacts beside the store when the store is the default one)."""
        from mlflow.exceptions import MlflowException

        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "dualteacher")
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            try:
                location = default_artifacts if default_store else None
                experiment_id = self.client.create_experiment(name, artifact_location=location)
            except MlflowException:  # another run created it meanwhile
                created = self.client.get_experiment_by_name(name)
                if created is None:  # not created after all: the error was another one
                    raise
                experiment_id = created.experiment_id
        tags = {"dualteacher.run_dir": str(run_dir.resolve())}
        run = self.client.create_run(experiment_id, run_name=run_dir.name, tags=tags)
        return run.info.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        flat = {key: str(value) for key, value in flat_params(params).items()}
        new = [Param(key, value) for key, value in flat.items() if key not in logged]
        self.client.log_batch(self.run_id, params=new)
        for key, value in flat.items():
            if key in logged and logged[key] != value:
                change = f"{logged[key]} -> {value} from iteration {self.iteration}"
                self.client.set_tag(self.run_id, f"changed.{key}", change)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(key, value, now, step) for key, value in metrics.items()])

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        self.client.log_image(self.run_id, image, key=tag, step=step)

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def finish(self, status: str) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if status == FINISHED else "FAILED")


class WandbTracker:
    """A Weights & Biases run (project ``$WANDB_PROJECT``, default ``dualteacher``; entity
    ``$WANDB_ENTITY``), named after the run directory, its local files under ``$WANDB_DIR``
    (default: the run directory). The settings are the run's config, the scalars its history,
    files (``best.safetensors``) artifacts named ``<run>-<file stem>``. A resumed run continues the
    W&B run of the same id; W&B drops a step below the last one it received, so iterations
    redone after an interruption keep their first values there (``metrics.jsonl`` has the redone ones).
    """

    requires: ClassVar[tuple[str, ...]] = ("wandb",)
    install: ClassVar[str] = "pip install 'dualteacher[wandb]'"

    def start(self, run_dir: Path, resume: Mapping[str, Any] | None, iteration: int) -> dict[str, Any]:
        import wandb

        resume = resume or {}
        self.name = run_dir.name
        options: dict[str, Any] = {
            "project": os.environ.get("WANDB_PROJECT") or resume.get("project") or "dualteacher",
            "entity": os.environ.get("WANDB_ENTITY") or resume.get("entity") or None,
            "name": run_dir.name,
            "id": resume.get("run_id"),  # None: W&B makes one up
            "resume": "allow",
            "reinit": "create_new",  # never finish a run the calling code has open
        }
        if not os.environ.get("WANDB_DIR"):
            options["dir"] = str(run_dir)
        try:
            self.run = wandb.init(**options)
        except Exception as err:  # wandb raises its own kinds (no API key, no network, ...)
            raise TrackerError(
                f"train.loggers: wandb could not start: {err}\nlog in with `wandb login`, or set "
                "WANDB_MODE=offline to keep the run on disk and upload it later with `wandb sync`"
            ) from err
        return {"run_id": self.run.id, "project": self.run.project, "entity": self.run.entity or None}

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.run.config.update(dict(params), allow_val_change=True)

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def log_image(self, tag: str, image: np.ndarray, step: int) -> None:
        import wandb

        self.run.log({tag: wandb.Image(image)}, step=step)

    def log_artifact(self, path: Path) -> None:
        import wandb

        name = re.sub(r"[^\w.-]", "_", f"{self.name}-{path.stem}")
        artifact = wandb.Artifact(name, type="model" if path.suffix == ".safetensors" else "file")
        artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == FINISHED else 1)


def tracker_names(loggers: Sequence[str]) -> list[str]:
    """The trackers of a run with ``train.loggers`` = ``loggers``: :data:`ALWAYS`, then those, once each."""
    return list(dict.fromkeys([*ALWAYS, *loggers]))


def check_trackers(loggers: Sequence[str]) -> None:
    """Raise :class:`TrackerError` naming the install command when a tracker's package is missing
    (ValueError for a name not in :data:`~dualteacher.registry.TRACKERS`). Imports nothing."""
    for name in tracker_names(loggers):
        tracker = TRACKERS.get(name)
        missing = [module for module in tracker.requires if importlib.util.find_spec(module) is None]
        if missing:
            raise TrackerError(
                f"train.loggers: {name} needs the {', '.join(missing)} package: {tracker.install} "
                f"(or drop {name} from train.loggers)"
            )


def read_states(run_dir: Path) -> dict[str, Any]:
    """``RUN_DIR/trackers.json``: what continues each tracker's run ({} before any)."""
    path = Path(run_dir) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def open_trackers(cfg: Config, run_dir: Path, iteration: int) -> list[Tracker]:
    """Start the trackers of ``cfg.train.loggers`` (and :data:`ALWAYS`) for a session of
    ``run_dir`` that starts at ``iteration``, each continuing its run of ``trackers.json``; record
    them there, then give each the settings and ``environment.json`` (when written). A tracker that
    fails to start finishes those started before it and raises its error (:class:`TrackerError`
    from MLflow's and W&B's)."""
    states = read_states(run_dir)
    trackers: list[Tracker] = []
    for name in tracker_names(cfg.train.loggers):
        tracker = TRACKERS.get(name)()
        try:
            state = tracker.start(run_dir, states.get(name), iteration)
        except BaseException:
            for started in trackers:
                started.finish(FAILED)
            raise
        if state:
            states[name] = state
        trackers.append(tracker)
    if states:
        (run_dir / STATE_FILE).write_text(json.dumps(states, indent=1) + "\n")
    environment = run_dir / ENVIRONMENT_FILE
    for tracker in trackers:
        tracker.log_params(cfg.to_dict())
        if environment.is_file():
            tracker.log_artifact(environment)
    return trackers
