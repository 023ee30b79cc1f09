"""Sharing a model in the Hugging Face hub layout: push to a folder, load it back (from the
folder, or by hub id through the hub library's offline cache) bit-identically, a card that
huggingface_hub parses, and errors that name what was looked for. Nothing reaches the network."""

import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import ModelCard, scan_cache_dir
from huggingface_hub.file_download import repo_folder_name
from safetensors.torch import load_file

from dualteacher import load_model
from dualteacher.checkpoint import CheckpointError, load_checkpoint, module_tensors, save_checkpoint
from dualteacher.cli import main
from dualteacher.config import load_config
from dualteacher.data.registry import open_source
from dualteacher.inference.hub import HubError
from dualteacher.inference.model import checkpoint_card
from dualteacher.models.build import model_from_config, model_normalization
from dualteacher.training.loop import train

from conftest import tiny_overrides

REPO = "org/name"
SRC = Path(__file__).resolve().parents[2] / "src"


def fixed_batch() -> torch.Tensor:
    """Two images in [0, 1] whose width is not a multiple of the stride (padding inside the network)."""
    return torch.rand(2, 3, 48, 53, generator=torch.Generator().manual_seed(7))


def cache_snapshot(folder: Path, cache: Path, repo_id: str, commit: str = "0" * 40) -> Path:
    """``folder``'s files as revision ``main`` of model ``repo_id`` in the hub cache ``cache``, laid
    out as ``snapshot_download`` leaves them: ``blobs/<hash>``, ``snapshots/<commit>/<file>``
    linking to its blob, ``refs/main`` holding the commit. The repository folder."""
    repo = cache / repo_folder_name(repo_id=repo_id, repo_type="model")
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    for path in folder.iterdir():
        data = path.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (repo / "snapshots" / commit / path.name).symlink_to(os.path.relpath(blob, repo / "snapshots" / commit))
    (repo / "refs" / "main").write_text(commit)
    return repo


@pytest.fixture
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache that this process's huggingface_hub reads, with HF_HUB_OFFLINE in force
    (both are read when the library is imported, hence set on its constants)."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture(scope="module")
def checkpoint(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``best.safetensors`` as the evaluator writes it, of an untrained network (no training:
    seeded random init), with the val metrics that network really scores."""
    run = tmp_path_factory.mktemp("hub") / "run"
    cfg = load_config(None, tiny_overrides(tiny_data, run))
    classes = open_source("folder", tiny_data["root"]).classes
    torch.manual_seed(0)
    network = model_from_config(cfg.model, len(classes), pretrained=False)
    path = run / "best.safetensors"
    state = {
        "kind": "model",
        "role": "student",
        "iteration": 0,
        "metrics": None,
        **checkpoint_card(cfg, classes, model_normalization(cfg.model)),
    }
    save_checkpoint(path, module_tensors("model", network), state)
    state["metrics"] = load_model(path).eval_dataset().as_dict(classes)
    save_checkpoint(path, module_tensors("model", network), state)
    return path


@pytest.fixture(scope="module")
def pushed(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pushed") / "org-name"
    assert main(["push", str(checkpoint), "--repo-id", REPO, "--local-dir", str(folder)]) == 0
    return folder


def test_pushed_folder_loads_back_bit_identical(checkpoint: Path, pushed: Path) -> None:
    assert sorted(p.name for p in pushed.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    original, shared = load_model(checkpoint), load_model(pushed)
    assert set(load_file(pushed / "model.safetensors")) == set(original.network.state_dict())  # one network only
    assert (shared.classes, shared.mean, shared.std, shared.role) == (
        original.classes,
        original.mean,
        original.std,
        "student",
    )
    assert shared.protocol == original.protocol and shared.trained_data == original.trained_data
    x = fixed_batch()
    assert torch.equal(shared.logits(x), original.logits(x))


def test_config_json_describes_the_network(checkpoint: Path, pushed: Path) -> None:
    config = json.loads((pushed / "config.json").read_text())
    _, state = load_checkpoint(checkpoint)
    assert config["config"] == state["config"] and config["classes"] == state["classes"]
    assert (config["mean"], config["std"]) == (state["mean"], state["std"])
    assert config["architecture"]["arch"] == "deeplabv3plus" and config["architecture"]["num_classes"] == 11
    assert config["dualteacher_version"] == "0.1.0" and config["metrics"] == state["metrics"]


def test_card_parses_and_holds_the_recorded_metrics(checkpoint: Path, pushed: Path) -> None:
    card = ModelCard.load(pushed / "README.md")
    _, state = load_checkpoint(checkpoint)
    data = card.data
    assert (data.library_name, data.license, data.pipeline_tag) == ("dualteacher", "apache-2.0", "image-segmentation")
    assert {"dualteacher", "semantic-segmentation", "supervised"} <= set(data.tags)
    assert data.datasets is None  # a folder dataset has no hub id
    miou, accuracy = data.eval_results
    assert (miou.metric_type, miou.metric_value) == ("mean_iou", round(state["metrics"]["miou"], 4))
    assert accuracy.metric_value == round(state["metrics"]["pixel_accuracy"], 4)
    assert miou.task_type == "image-segmentation" and miou.dataset_split == "val"
    command = json.loads((pushed / "config.json").read_text())["eval_command"]
    assert miou.metric_args["command"] == command
    assert shlex.split(command)[:3] == ["dualteacher", "eval", REPO] and "--data" in command
    assert "Supervised baseline" in card.text and command in card.text
    assert all(f"| {i} | {name} |" in card.text for i, name in enumerate(state["classes"]))


def test_hub_id_loads_from_the_offline_cache(pushed: Path, offline_cache: Path) -> None:
    cache_snapshot(pushed, offline_cache, REPO)
    assert [(r.repo_id, r.nb_files) for r in scan_cache_dir(offline_cache).repos] == [(REPO, 3)]
    model = load_model(REPO)
    x = fixed_batch()
    assert torch.equal(model.logits(x), load_model(pushed).logits(x))


def test_a_local_folder_wins_over_the_hub_id(
    pushed: Path, tmp_path: Path, offline_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").symlink_to(pushed)
    monkeypatch.chdir(tmp_path)
    assert load_model(REPO).classes[0] == "background"  # nothing cached: only the folder can give it


def test_missing_sources_name_what_was_looked_for(tmp_path: Path, offline_cache: Path, checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match=r"absent\.safetensors does not exist: looked for a checkpoint file"):
        load_model(tmp_path / "absent.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        HubError,
        match=r"empty is not a shared dualteacher model; looked for model\.safetensors "
        r"and config\.json .* found no config\.json and no model\.safetensors",
    ):
        load_model(tmp_path / "empty")
    with pytest.raises(HubError, match=r"it is a run directory, load its best\.safetensors"):
        load_model(checkpoint.parent)
    with pytest.raises(HubError) as info:
        load_model("org/absent")
    message = str(info.value)
    assert "'org/absent'" in message and str(offline_cache) in message and "HF_HUB_OFFLINE is set" in message
    assert "looked for model.safetensors and config.json" in message


def test_push_errors_are_clear(checkpoint: Path, tmp_path: Path, offline_cache: Path, capsys) -> None:
    assert main(["push", str(tmp_path / "no-run"), "--repo-id", REPO, "--local-dir", str(tmp_path / "o")]) == 2
    assert "no-run does not exist: push takes a run directory or a checkpoint file" in capsys.readouterr().err
    assert main(["push", str(checkpoint), "--repo-id", "name-only", "--local-dir", str(tmp_path / "o")]) == 2
    assert "--repo-id must be ORG/NAME" in capsys.readouterr().err
    assert main(["push", str(checkpoint), "--repo-id", REPO, "--local-dir", str(tmp_path / "o"), "--private"]) == 2
    assert "--private" in capsys.readouterr().err
    assert main(["push", str(checkpoint), "--repo-id", REPO]) == 2  # an upload, refused by HF_HUB_OFFLINE
    err = capsys.readouterr().err
    assert "uploading to org/name failed" in err and "--local-dir" in err
    assert not (tmp_path / "o").exists()


def test_without_huggingface_hub_push_says_how_to_install_it(
    checkpoint: Path, pushed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import huggingface_hub now raises ImportError
    assert main(["push", str(checkpoint), "--repo-id", REPO, "--local-dir", str(tmp_path / "o")]) == 2
    assert "dualteacher push needs huggingface_hub: pip install 'dualteacher[hub]'" in capsys.readouterr().err
    with pytest.raises(
        HubError,
        match=r"'org/absent' is no file or folder here; loading it as a Hugging Face hub "
        r"model needs huggingface_hub",
    ):
        load_model("org/absent")
    assert load_model(pushed).role == "student"  # a local folder needs no hub library


# ----------------------------------------------------------------------------- a trained run


@pytest.fixture(scope="module")
def dual_run(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two iterations of Dual Teacher; best.safetensors keeps the student (train.keep=student)."""
    run = tmp_path_factory.mktemp("hub-dual") / "run"
    train(
        load_config(
            None,
            tiny_overrides(
                tiny_data, run, "dual_teacher", train__epochs=1, train__iters_per_epoch=2, train__keep="student"
            ),
        ),
        progress=False,
    )
    return run


@pytest.mark.slow
def test_push_a_teacher_of_a_run_directory(dual_run: Path, tmp_path: Path, capsys) -> None:
    assert main(["push", str(dual_run), "--repo-id", REPO, "--local-dir", str(tmp_path), "--model", "teacher1"]) == 0
    assert "last.safetensors [teacher1, val mIoU" in capsys.readouterr().out
    config = json.loads((tmp_path / "config.json").read_text())
    _, state = load_checkpoint(dual_run / "last.safetensors")
    assert config["role"] == "teacher1" and config["source"]["checkpoint"] == "last.safetensors"
    assert config["metrics"]["miou"] == state["history"][-1]["teacher1/miou"]
    assert "Dual Teacher: switching temporary teachers" in (tmp_path / "README.md").read_text()
    x = fixed_batch()
    assert torch.equal(
        load_model(tmp_path).logits(x), load_model(dual_run / "last.safetensors", role="teacher1").logits(x)
    )


@pytest.mark.slow
def test_card_command_reproduces_the_recorded_miou_from_the_hub_cache(dual_run: Path, tmp_path: Path) -> None:
    """In a fresh process reading HF_HOME and HF_HUB_OFFLINE=1 from its environment: load_model by
    hub id gives the run's logits bit for bit, and the card's eval command scores the card's mIoU."""
    folder = tmp_path / "pushed"
    assert main(["push", str(dual_run), "--repo-id", REPO, "--local-dir", str(folder)]) == 0
    config = json.loads((folder / "config.json").read_text())
    assert config["source"]["checkpoint"] == "best.safetensors" and config["role"] == "student"
    cache_snapshot(folder, tmp_path / "hf" / "hub", REPO)
    code = (
        "import shlex, sys, torch\n"
        "from safetensors.torch import save_file\n"
        "from dualteacher import load_model\n"
        "from dualteacher.cli import main\n"
        "x = torch.rand(2, 3, 48, 53, generator=torch.Generator().manual_seed(7))\n"
        f"save_file({{'logits': load_model({REPO!r}).logits(x).contiguous()}}, sys.argv[1])\n"
        "sys.exit(main(shlex.split(sys.argv[2])[1:] + ['--json']))\n"
    )
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": str(torch.get_num_threads()),
    }  # bit for bit needs the same CPU threads
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "logits.safetensors"), config["eval_command"]],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    scored = json.loads(result.stdout)
    assert scored["miou"] == config["metrics"]["miou"]
    expected = load_model(dual_run / "best.safetensors").logits(fixed_batch())
    assert torch.equal(load_file(tmp_path / "logits.safetensors")["logits"], expected)
