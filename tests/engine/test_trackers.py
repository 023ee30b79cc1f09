"""Experiment trackers (train.loggers): what a run sends to TensorBoard, the CSV log, MLflow and
W&B comes back through each tool's own reader, and a resumed run goes on in the same tracker run."""

import base64
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dualteacher.cli import main
from dualteacher.config import ConfigError, load_config
from dualteacher.registry import TRACKERS
from dualteacher.runlog import read_log
from dualteacher.training.loop import Trainer
from dualteacher.training.trackers import CsvTracker, check_trackers, read_states, tracker_names

from scenes import make_scenes, scenes_config


@pytest.fixture
def scenes(tmp_path: Path) -> Path:
    return make_scenes(tmp_path / "data")


def losses(run_dir: Path) -> dict[int, float]:
    """``metrics.jsonl``'s training loss by iteration."""
    return {r["iteration"]: r["loss"] for r in read_log(run_dir) if r["type"] == "train"}


def student_miou(run_dir: Path) -> dict[int, float]:
    return {r["iteration"]: r["student/miou"] for r in read_log(run_dir) if r["type"] == "eval"}


def test_loggers_are_checked_by_name() -> None:
    with pytest.raises(ConfigError, match="train.loggers: unknown tracker 'mlfow'"):
        load_config(None, ["train.loggers=[tensorboard,mlfow]"])
    assert load_config(None, []).train.loggers == ("tensorboard",)
    assert tracker_names(["wandb", "csv"]) == ["csv", "wandb"]  # csv always, once
    check_trackers(["tensorboard"])


class NeedsMissing(CsvTracker):
    """A tracker whose package is not installed."""

    requires = ("dualteacher_no_such_package",)
    install = "pip install dualteacher-no-such-package"


def test_a_missing_tracker_package_stops_the_command_before_training(scenes: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    with TRACKERS.registered("missing", NeedsMissing):
        overrides = [f"data.root={scenes}", f"run_dir={run}", "train.loggers=[tensorboard,missing]"]
        assert main(["train", *overrides, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert (
        "train.loggers: missing needs the dualteacher_no_such_package package: "
        "pip install dualteacher-no-such-package" in err
    )
    assert "Traceback" not in err and not run.exists()


@pytest.mark.slow
def test_csv_and_tensorboard_drop_what_a_resume_redoes(scenes: Path, tmp_path: Path) -> None:
    """A run finished at iteration 2 is resumed from its older checkpoint (iteration 1): the CSV
    log, TensorBoard and metrics.jsonl each keep one value per iteration, the redone one."""
    run = tmp_path / "run"
    cfg = scenes_config(scenes, run, train__checkpoint_every=1)
    Trainer(cfg, progress=False).fit()
    first = losses(run)
    (run / "last.safetensors").unlink()  # resume from last-1.safetensors, at iteration 1
    Trainer(cfg, progress=False).fit()
    redone = losses(run)
    assert sorted(redone) == [1, 2] and redone[1] == first[1]

    with (run / "metrics.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    csv_loss = [(int(r["iteration"]), float(r["value"])) for r in rows if r["name"] == "train/loss"]
    assert csv_loss == [(1, redone[1]), (2, redone[2])]
    assert [float(r["value"]) for r in rows if r["name"] == "student/miou"] == [student_miou(run)[2]]

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("train/loss")
    assert [e.step for e in scalars] == [1, 2]  # the first run's iteration 2 is purged
    assert [e.value for e in scalars] == pytest.approx([redone[1], redone[2]])
    assert read_states(run) == {}  # neither keeps a run to continue


@pytest.mark.slow
def test_mlflow_gets_params_metrics_and_the_best_network_and_a_resume_continues_its_run(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = pytest.importorskip("mlflow.tracking", reason="needs pip install 'dualteacher[mlflow]'")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    run = tmp_path / "runs" / "mine"
    Trainer(scenes_config(scenes, run, train__loggers="[mlflow]"), progress=False).fit(stop_at=1)
    started = read_states(run)["mlflow"]
    assert started["tracking_uri"] == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"  # the default store

    longer = scenes_config(scenes, run, train__loggers="[mlflow]", train__log_every=2)  # a safe change
    Trainer(longer, allow_changes=True, progress=False).fit()
    assert read_states(run)["mlflow"] == started

    client = tracking.MlflowClient(tracking_uri=started["tracking_uri"])
    mlflow_run = client.get_run(started["run_id"])
    assert mlflow_run.info.status == "FINISHED" and mlflow_run.info.run_name == "mine"
    experiment = client.get_experiment(mlflow_run.info.experiment_id)
    assert experiment.name == "dualteacher"
    assert len(client.search_runs([experiment.experiment_id])) == 1  # continued, not a second run
    params = mlflow_run.data.params
    assert params["method.name"] == "supervised" and params["train.iters_per_epoch"] == "2"
    assert params["train.log_every"] == "1"  # MLflow keeps a parameter's first value ...
    assert mlflow_run.data.tags["changed.train.log_every"] == "1 -> 2 from iteration 1"  # ... and notes the change
    history = client.get_metric_history(started["run_id"], "train/loss")
    assert sorted((m.step, m.value) for m in history) == sorted(losses(run).items())
    miou = client.get_metric_history(started["run_id"], "student/miou")
    assert [(m.step, m.value) for m in miou] == list(student_miou(run).items())

    assert {a.path for a in client.list_artifacts(started["run_id"])} == {"best.safetensors", "environment.json"}
    best = Path(client.download_artifacts(started["run_id"], "best.safetensors", str(tmp_path / "download")))
    assert best.read_bytes() == (run / "best.safetensors").read_bytes()
    assert (tmp_path / "runs" / "mlartifacts").is_dir()  # artifacts beside the default store


def inspect_offline(run_path: Path) -> list[dict]:
    """The records of a W&B offline run, read by wandb's own reader (``wandb leet inspect --json``)."""
    command = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0 and "No such command" in result.stderr:
        pytest.skip("this wandb has no offline-run reader (wandb leet inspect)")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.mark.slow
def test_wandb_offline_run_holds_config_history_and_the_best_network_and_a_resume_continues_it(
    scenes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb", reason="needs pip install 'dualteacher[wandb]'")
    wandb_dir = tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    for key, value in {
        "WANDB_MODE": "offline",
        "WANDB_DIR": wandb_dir,
        "WANDB_SILENT": "true",
        "WANDB_CACHE_DIR": tmp_path / "cache",
        "WANDB_DATA_DIR": tmp_path / "data_dir",
        "WANDB_CONFIG_DIR": tmp_path / "config_dir",
        "XDG_CACHE_HOME": tmp_path / "xdg_cache",
    }.items():  # wandb-core's own logs
        monkeypatch.setenv(key, str(value))
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    run = tmp_path / "mine"
    cfg = scenes_config(scenes, run, train__loggers="[wandb]")
    Trainer(cfg, progress=False).fit(stop_at=1)
    run_id = read_states(run)["wandb"]["run_id"]
    Trainer(cfg, progress=False).fit()
    assert read_states(run)["wandb"] == {"run_id": run_id, "project": "dualteacher", "entity": None}

    sessions = sorted((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(sessions) == 2 and all(s.name.endswith(run_id) or s.name.endswith(f"{run_id}-1") for s in sessions)
    records = [inspect_offline(s) for s in sessions]
    for session in records:
        (header,) = [r["run"] for r in session if r["type"] == "run"]
        assert header["run_id"] == run_id and header["display_name"] == "mine" and header["project"] == "dualteacher"
    config = next(r["config"]["update"] for r in records[0] if r["type"] == "config")
    assert config["method"]["name"] == "supervised" and config["train"]["iters_per_epoch"] == 2
    history = [r["history"]["item"] for session in records for r in session if r["type"] == "history"]
    assert {h["_step"]: h["train/loss"] for h in history} == pytest.approx(losses(run))
    assert [h["student/miou"] for h in history if "student/miou" in h] == pytest.approx([student_miou(run)[2]])

    (artifact,) = [r["artifact"] for r in records[1] if r["type"] == "artifact" and r["artifact"]["type"] == "model"]
    (entry,) = artifact["manifest"]["contents"]
    md5 = base64.b64encode(hashlib.md5((run / "best.safetensors").read_bytes()).digest()).decode()
    assert artifact["name"] == "mine-best" and entry["path"] == "best.safetensors" and entry["digest"] == md5
