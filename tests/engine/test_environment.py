"""The environment record: what a run trained on, in environment.json and every checkpoint's
header; a run resumed elsewhere keeps both environments and says so; eval and report show it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dualteacher
from dualteacher import environment
from dualteacher.checkpoint import load_checkpoint
from dualteacher.cli import main
from dualteacher.runlog import read_log
from dualteacher.training.loop import Trainer

from scenes import make_scenes, scenes_config


def test_collect_records_versions_devices_and_the_command() -> None:
    record = environment.collect(torch.device("cpu"), world_size=3)
    assert record["dualteacher"] == dualteacher.__version__ and record["torch"] == torch.__version__
    assert record["python"] == ".".join(map(str, sys.version_info[:3]))
    assert all(record[name] for name in ("torchvision", "segmentation_models_pytorch", "timm"))
    assert record["device"] == "cpu" and record["device_names"] and record["cuda"] is None
    assert record["threads"] == torch.get_num_threads() and record["world_size"] == 3
    assert record["argv"] == sys.argv
    json.dumps(record)  # goes into a JSON header as it is


def test_git_commit_is_the_checkout_of_the_package_or_none(tmp_path: Path) -> None:
    package = Path(dualteacher.__file__).parent
    head = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    commit = environment.git_commit()
    assert commit is None or commit == head.stdout.strip()
    assert environment.git_commit(tmp_path) is None  # not a checkout: None, never an error
    assert environment.git_commit(tmp_path / "missing") is None


def test_differences_leave_out_the_command_line() -> None:
    old = {"iteration": 0, "torch": "2.14.1", "argv": ["a"], "threads": 2}
    assert environment.differences(old, {**old, "iteration": 5, "argv": ["b"]}) == {}
    assert environment.differences(old, {**old, "threads": 8}) == {"threads": [2, 8]}
    assert environment.describe([])[0].startswith("environment: not recorded")


@pytest.mark.slow
def test_a_resume_in_another_environment_keeps_both_and_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog
) -> None:
    root = make_scenes(tmp_path / "data")
    run = tmp_path / "run"
    cfg = scenes_config(root, run)
    Trainer(cfg, progress=False).fit(stop_at=1)
    (first,) = environment.read_environments(run)
    assert first["iteration"] == 0 and first["torch"] == torch.__version__ and first["argv"] == sys.argv
    assert load_checkpoint(run / "last.safetensors")[1]["environments"] == [first]
    caplog.clear()

    collect = environment.collect
    monkeypatch.setattr(environment, "collect", lambda *a, **k: {**collect(*a, **k), "torch": "9.9.9", "threads": 64})
    Trainer(cfg, progress=False).fit()
    out = caplog.text  # the library logs; the command shows it on stdout
    assert "warning:" in out and "continues in another environment" in out
    assert f"torch: {torch.__version__} → 9.9.9" in out
    entries = environment.read_environments(run)
    assert [(e["iteration"], e["torch"], e["threads"]) for e in entries] == [
        (0, torch.__version__, first["threads"]),
        (1, "9.9.9", 64),
    ]
    assert load_checkpoint(run / "last.safetensors")[1]["environments"] == entries
    assert load_checkpoint(run / "best.safetensors")[1]["environments"] == entries  # written at iteration 2
    (moved,) = [r for r in read_log(run) if r["type"] == "environment"]
    assert moved["iteration"] == 1 and moved["changes"]["torch"] == [torch.__version__, "9.9.9"]

    caplog.clear()
    again = Trainer(cfg, progress=False)  # resumes (finished) in the same, patched, environment: nothing added
    assert "another environment" not in caplog.text
    assert again.state.environments == entries

    assert main(["eval", str(run / "best.safetensors"), "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"environment from iteration 0: dualteacher {dualteacher.__version__}" in out
    assert "environment from iteration 1:" in out and "torch 9.9.9" in out
    assert main(["eval", str(run / "best.safetensors"), "--data", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["environments"] == entries
    assert main(["report", str(run), "--out", str(tmp_path / "r.png")]) == 0
    assert "environment from iteration 1:" in capsys.readouterr().out

    pytest.importorskip("huggingface_hub", reason="the model card needs pip install 'dualteacher[hub]'")
    hub = tmp_path / "hub"
    assert main(["push", str(run / "best.safetensors"), "--repo-id", "org/name", "--local-dir", str(hub)]) == 0
    assert json.loads((hub / "config.json").read_text())["environments"] == entries
    card = (hub / "README.md").read_text()
    assert "## Environment" in card and "environment from iteration 1:" in card and "torch 9.9.9" in card
