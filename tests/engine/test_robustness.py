"""Never lose a run: kill and resume bitwise, SIGTERM, corrupted checkpoints, the NaN guard."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dualteacher.checkpoint import load_checkpoint, save_rotating
from dualteacher.config import load_config
from dualteacher.training.loop import Trainer

from conftest import tiny_overrides

LONGER = {"train__epochs": 3, "train__iters_per_epoch": 4, "train__checkpoint_every": 1}


def launch(overrides: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "dualteacher", "train", *overrides, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def logged_iteration(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return 0
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return max((r["iteration"] for r in lines if r["type"] == "train"), default=0)


def run_until(overrides: list[str], run_dir: Path, iteration: int, sig: int) -> str:
    """Start a training subprocess and send ``sig`` once it has logged ``iteration``."""
    proc = launch(overrides)
    deadline = time.time() + 120
    while logged_iteration(run_dir) < iteration and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[0]
    proc.send_signal(sig)
    out = proc.communicate(timeout=120)[0]
    return out


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return dict(load_file(str(run_dir / "last.safetensors")).items())


@pytest.mark.slow
def test_sigkill_twice_and_sigterm_then_resume_is_bitwise_identical(tiny_data, tmp_path: Path) -> None:
    reference = tiny_overrides(tiny_data, tmp_path / "ref", "dual_teacher", **LONGER)
    proc = launch(reference)
    assert proc.wait(timeout=300) == 0, proc.communicate()[0]

    run_dir = tmp_path / "killed"
    overrides = tiny_overrides(tiny_data, run_dir, "dual_teacher", **LONGER)
    run_until(overrides, run_dir, 2, signal.SIGKILL)  # mid-epoch 0
    run_until(overrides, run_dir, 6, signal.SIGKILL)  # mid-epoch 1
    out = run_until(overrides, run_dir, 9, signal.SIGTERM)  # a scheduler's pre-emption
    assert "stopped by SIGTERM" in out and "resuming" in out
    proc = launch(overrides)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert "resuming" in out

    a, b = weights(tmp_path / "ref"), weights(run_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    iterations = [
        json.loads(x)["iteration"]
        for x in (run_dir / "metrics.jsonl").read_text().splitlines()
        if json.loads(x)["type"] == "train"
    ]
    assert iterations == list(range(1, 13))


@pytest.mark.slow
def test_corrupted_newest_checkpoint_falls_back_to_the_previous_one(tiny_data, tmp_path: Path, caplog) -> None:
    settings = tiny_overrides(tiny_data, tmp_path / "ref", "supervised", **LONGER)
    Trainer(load_config(None, settings), progress=False).fit()

    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_data, run, "supervised", **LONGER)
    Trainer(load_config(None, overrides), progress=False).fit(stop_at=5)
    assert {p.name for p in run.glob("last*.safetensors")} == {"last.safetensors", "last-1.safetensors"}
    data = bytearray((run / "last.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (run / "last.safetensors").write_bytes(bytes(data))

    trainer = Trainer(load_config(None, overrides), progress=False)
    assert "skipping last.safetensors" in caplog.text
    assert trainer.resumed_from == run / "last-1.safetensors" and trainer.state.iteration == 4
    trainer.fit()
    a, b = weights(tmp_path / "ref"), weights(run)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_failed_write_during_rotation_keeps_every_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_rotating(tmp_path, {"w": torch.zeros(2)}, {"iteration": 1}, keep=2)
    save_rotating(tmp_path, {"w": torch.ones(2)}, {"iteration": 2}, keep=2)
    monkeypatch.setattr("os.fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        save_rotating(tmp_path, {"w": torch.full((2,), 3.0)}, {"iteration": 3}, keep=2)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.safetensors")[1]["iteration"] == 2
    assert load_checkpoint(tmp_path / "last-1.safetensors")[1]["iteration"] == 1


@pytest.mark.slow
def test_nan_steps_are_skipped_and_too_many_stop_the_run(
    tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(tiny_data, run, "supervised", **LONGER))
    trainer = Trainer(cfg, progress=False)
    step = trainer.method.step

    def poisoned(labeled, unlabeled, gen):
        loss, parts = step(labeled, unlabeled, gen)
        return (loss * float("nan"), parts) if trainer.state.iteration in (2, 3) else (loss, parts)

    monkeypatch.setattr(trainer.method, "step", poisoned)
    before = [p.detach().clone() for p in trainer.method.student.parameters()]
    trainer.fit(stop_at=4)
    assert trainer.state.skipped_steps == 2
    assert all(torch.isfinite(p).all() for p in trainer.method.student.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.method.student.parameters()))
    saved = load_checkpoint(run / "last.safetensors")[1]
    assert saved["iteration"] == 4 and saved["skipped_steps"] == 2

    def infinite(labeled, unlabeled, gen):
        return step(labeled, unlabeled, gen)[0] * float("inf"), {"loss_sup": torch.tensor(float("inf"))}

    monkeypatch.setattr(trainer.method, "step", infinite)
    with pytest.raises(FloatingPointError, match=r"5 steps in a row .* iteration 8 .*loss_sup=inf"):
        trainer.fit()
    assert load_checkpoint(run / "last.safetensors")[1]["iteration"] == 4
