"""``method.init_from``: every network of a run starts from an earlier run's student."""

from pathlib import Path

import pytest
import torch

from dualteacher.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dualteacher.config import ConfigError, load_config
from dualteacher.training.loop import Trainer, train

from conftest import tiny_overrides


@pytest.fixture(scope="module")
def warm_run(tiny_data, tmp_path_factory) -> Path:
    """A finished supervised run of six iterations (its student is not the random init)."""
    run_dir = tmp_path_factory.mktemp("warm") / "supervised"
    train(load_config(None, tiny_overrides(tiny_data, run_dir)), progress=False)
    return run_dir


def _student_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(run_dir / "last.safetensors")
    return {k.removeprefix("model/student/"): v for k, v in tensors.items() if k.startswith("model/student/")}


def _same(network: torch.nn.Module, weights: dict[str, torch.Tensor]) -> bool:
    state = network.state_dict()
    return state.keys() == weights.keys() and all(torch.equal(state[k], weights[k]) for k in state)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dual_teacher", "supervised"])
def test_every_network_starts_from_the_warm_up_student(tiny_data, warm_run, tmp_path, method):
    cfg = load_config(None, tiny_overrides(tiny_data, tmp_path / method, method, method__init_from=str(warm_run)))
    trainer = Trainer(cfg, progress=False)
    weights = _student_weights(warm_run)
    networks = trainer.method.modules()
    assert len(networks) == (3 if method == "dual_teacher" else 1)
    for network in networks.values():
        assert _same(network, weights)
    fresh = Trainer(load_config(None, tiny_overrides(tiny_data, tmp_path / "fresh", method)), progress=False)
    assert not _same(fresh.method.student, weights)


@pytest.mark.slow
def test_a_best_checkpoint_file_works_too(tiny_data, warm_run, tmp_path):
    best, _ = load_checkpoint(warm_run / "best.safetensors")
    cfg = load_config(
        None,
        tiny_overrides(
            tiny_data, tmp_path / "run", "mean_teacher", method__init_from=str(warm_run / "best.safetensors")
        ),
    )
    trainer = Trainer(cfg, progress=False)
    assert _same(trainer.method.student, {k.removeprefix("model/"): v for k, v in best.items()})


@pytest.mark.slow
def test_wrong_checkpoints_are_refused_naming_the_file_before_anything_is_written(tiny_data, warm_run, tmp_path):
    unfinished = tmp_path / "stopped_run"
    Trainer(load_config(None, tiny_overrides(tiny_data, unfinished)), progress=False).fit(stop_at=3)
    tensors, state = load_checkpoint(warm_run / "last.safetensors")
    other_classes = tmp_path / "other_classes.safetensors"
    save_checkpoint(other_classes, tensors, {**state, "classes": [f"c{i}" for i in range(len(state["classes"]))]})
    cases = {
        "missing": (tmp_path / "nowhere" / "last.safetensors", {}, "does not exist"),
        "architecture": (warm_run, {"model__decoder_channels": 16}, "model.decoder_channels=32"),
        "normalisation": (warm_run, {"model__mean": "[0.4, 0.4, 0.4]"}, "normalised with mean"),
        "classes": (other_classes, {}, "its classes"),
        "unfinished": (unfinished, {}, "stopped at iteration 3 of 6"),
    }
    for name, (path, extra, message) in cases.items():
        run_dir = tmp_path / name
        cfg = load_config(
            None, tiny_overrides(tiny_data, run_dir, "mean_teacher", method__init_from=str(path), **extra)
        )
        with pytest.raises(CheckpointError, match=message) as err:
            Trainer(cfg, progress=False)
        assert str(path) in str(err.value)
        assert not (run_dir / "metrics.jsonl").exists()


@pytest.mark.slow
def test_init_from_needs_teachers_copied_from_the_student(tiny_data, warm_run, tmp_path):
    with pytest.raises(ConfigError, match="method.init_from: .* needs method.teacher_init=student"):
        load_config(
            None,
            tiny_overrides(
                tiny_data, tmp_path, "dual_teacher", method__init_from=str(warm_run), method__teacher_init="independent"
            ),
        )


@pytest.mark.slow
def test_a_resumed_run_may_find_its_warm_up_elsewhere(tiny_data, warm_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    Trainer(
        load_config(None, tiny_overrides(tiny_data, run_dir, "mean_teacher", method__init_from=str(warm_run))),
        progress=False,
    ).fit(stop_at=3)
    moved = Path(shutil.copytree(warm_run, tmp_path / "moved"))
    record = train(
        load_config(None, tiny_overrides(tiny_data, run_dir, "mean_teacher", method__init_from=str(moved))),
        progress=False,
    )
    assert record["iteration"] == 6
