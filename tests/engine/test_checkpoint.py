"""Checkpoints: safetensors + JSON, verified, atomic."""

from pathlib import Path

import pytest
import torch

from dualteacher.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_module,
    load_optimizer,
    module_tensors,
    optimizer_tensors,
    save_checkpoint,
)


def test_round_trip_with_state(tmp_path: Path) -> None:
    tensors = {"model/w": torch.randn(3, 4), "model/n": torch.tensor(7), "b": torch.ones(2, dtype=torch.bfloat16)}
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"iteration": 12, "nested": {"a": [1, 2]}})
    loaded, state = load_checkpoint(tmp_path / "c.safetensors")
    assert state == {"iteration": 12, "nested": {"a": [1, 2]}}
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert not list(tmp_path.glob(".*.tmp"))


def test_corruption_and_truncation_are_detected_by_name(tmp_path: Path) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.arange(1000, dtype=torch.float32)}, {})
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="c.safetensors is corrupted"):
        load_checkpoint(path)
    path.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="c.safetensors is truncated"):
        load_checkpoint(path)


def test_failed_write_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.zeros(3)}, {"iteration": 1})

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full_disk)
    with pytest.raises(OSError):
        save_checkpoint(path, {"w": torch.ones(3)}, {"iteration": 2})
    monkeypatch.undo()
    tensors, state = load_checkpoint(path)
    assert state["iteration"] == 1 and torch.equal(tensors["w"], torch.zeros(3))
    assert not list(tmp_path.glob(".*.tmp"))


def test_optimizer_state_round_trip(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    tensors, meta = optimizer_tensors(opt)
    save_checkpoint(tmp_path / "o.safetensors", tensors, meta)
    loaded, meta2 = load_checkpoint(tmp_path / "o.safetensors")
    fresh = torch.optim.AdamW(model.parameters(), lr=0.1)
    load_optimizer(fresh, loaded, meta2)
    before, after = opt.state_dict()["state"], fresh.state_dict()["state"]
    assert before.keys() == after.keys()
    for pid in before:
        for k in before[pid]:
            assert torch.equal(before[pid][k], after[pid][k]), (pid, k)


def test_weights_that_do_not_fit_the_network_are_a_checkpoint_error() -> None:
    tensors = module_tensors("model/student", torch.nn.Conv2d(8, 3, 1))
    load_module(torch.nn.Conv2d(8, 3, 1), tensors, "model/student")
    with pytest.raises(CheckpointError, match="'model/student' weights do not fit the network built from the settings"):
        load_module(torch.nn.Conv2d(8, 4, 1), tensors, "model/student")
    with pytest.raises(CheckpointError, match="no weights for 'model/teacher'"):
        load_module(torch.nn.Conv2d(8, 3, 1), tensors, "model/teacher")
