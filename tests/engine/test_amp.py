"""Mixed precision and channels-last: resolution per device, GradScaler checkpointing, CUDA smoke run."""

from pathlib import Path

import pytest
import torch

from dualteacher.checkpoint import load_checkpoint
from dualteacher.config import ConfigError, load_config
from dualteacher.runlog import read_log
from dualteacher.training.loop import Trainer, resolve_amp

from conftest import tiny_overrides

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_amp_resolves_per_device() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert [resolve_amp(name, cpu) for name in ("auto", "bf16", "fp16", "off")] == [None] * 4
    assert resolve_amp("auto", gpu) is torch.bfloat16
    assert resolve_amp("fp16", gpu) is torch.float16
    assert resolve_amp("off", gpu) is None


def test_unknown_amp_is_rejected(tiny_data, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.amp"):
        load_config(None, tiny_overrides(tiny_data, tmp_path / "run", train__amp="fp8"))


def test_cpu_trains_in_float32_without_scaler(tiny_data, tmp_path: Path) -> None:
    cfg = load_config(None, tiny_overrides(tiny_data, tmp_path / "run", train__amp="fp16", train__device="cpu"))
    trainer = Trainer(cfg, progress=False)
    assert trainer.amp_dtype is None and not trainer.scaler.is_enabled()


@pytest.mark.slow
def test_grad_scaler_state_round_trips_through_the_training_checkpoint(tiny_data, tmp_path: Path) -> None:
    # The fp16 code path with a CPU GradScaler (CUDA picks it for train.amp=fp16): steps go through
    # the scaler, its state is saved as JSON in last.safetensors and restored on resume.
    run = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(tiny_data, run, "mean_teacher", train__device="cpu"))
    trainer = Trainer(cfg, progress=False)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**20, growth_interval=2)
    trainer.fit(stop_at=4)
    saved = load_checkpoint(run / "last.safetensors")[1]["scaler"]
    assert saved == trainer.scaler.state_dict() and saved["scale"] > 2.0**20  # grew: steps went through it
    assert [r["skipped_steps"] for r in read_log(run) if r["type"] == "train"][-1] == trainer.state.skipped_steps

    resumed = Trainer(cfg, resume=False, progress=False)
    resumed.scaler = torch.amp.GradScaler("cpu")
    assert resumed.resume() == run / "last.safetensors"
    assert resumed.scaler.state_dict() == saved


def test_channels_last_networks_and_batches(tiny_data, tmp_path: Path) -> None:
    cfg = load_config(
        None,
        tiny_overrides(
            tiny_data,
            tmp_path / "run",
            "dual_teacher",
            train__channels_last=True,
            train__epochs=1,
            train__iters_per_epoch=1,
        ),
    )
    trainer = Trainer(cfg, progress=False)
    convs = [
        m.weight for net in trainer.method.modules().values() for m in net.modules() if isinstance(m, torch.nn.Conv2d)
    ]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs if w.shape[-1] > 1)
    record = trainer.fit()
    assert 0.0 <= record["student/miou"] <= 1.0


@pytest.mark.slow
@cuda
def test_cuda_bf16_channels_last_smoke(tiny_data, tmp_path: Path) -> None:
    cfg = load_config(
        None,
        tiny_overrides(
            tiny_data,
            tmp_path / "run",
            "dual_teacher",
            train__device="cuda",
            train__amp="bf16",
            train__channels_last=True,
        ),
    )
    trainer = Trainer(cfg, progress=False)
    assert trainer.amp_dtype is torch.bfloat16
    record = trainer.fit()
    losses = [r["loss"] for r in read_log(tmp_path / "run") if r["type"] == "train"]
    assert all(torch.isfinite(torch.tensor(losses))) and 0.0 <= record["student/miou"] <= 1.0


@pytest.mark.slow
@cuda
def test_cuda_fp16_scaler_state_is_checkpointed(tiny_data, tmp_path: Path) -> None:
    cfg = load_config(
        None, tiny_overrides(tiny_data, tmp_path / "run", "supervised", train__device="cuda", train__amp="fp16")
    )
    trainer = Trainer(cfg, progress=False)
    assert trainer.scaler.is_enabled()
    trainer.fit(stop_at=3)
    saved = load_checkpoint(tmp_path / "run" / "last.safetensors")[1]["scaler"]
    assert saved["scale"] > 0
    assert Trainer(cfg, progress=False).scaler.state_dict() == saved
