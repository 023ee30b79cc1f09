"""Shared fixtures: a tiny digit-scenes dataset generated once per test session."""

import os
from pathlib import Path

import pytest
import torch

from dualteacher.data.digits import generate_digit_scenes
from dualteacher.data.registry import open_source
from dualteacher.data.split_files import split_source

if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def check_cache(tmp_path_factory: pytest.TempPathFactory):
    """The project's cache folder for this test session and its subprocesses (data-check
    caches land there), away from the user's ``~/.cache/dualteacher``."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DUALTEACHER_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """48x48 digit scenes: 64 train (1/8 labelled), 16 val."""
    root = tmp_path_factory.mktemp("digits") / "data"
    generate_digit_scenes(root, num_train=64, num_val=16, size=48, seed=0)
    labeled, unlabeled = split_source(open_source("folder", root), "1/8", 0)
    return {"root": str(root), "labeled": labeled.stem, "unlabeled": unlabeled.stem}


def tiny_overrides(data: dict[str, str], run_dir: Path, method: str = "supervised", **extra: object) -> list[str]:
    """Settings for a run of a few iterations of a small random-init model on ``tiny_data``."""
    settings = {
        "data.root": data["root"],
        "data.labeled_split": data["labeled"],
        "data.unlabeled_split": data["unlabeled"],
        "data.crop_size": 48,
        "data.workers": 0,
        "data.val_batch_size": 8,
        "model.encoder": "tu-tf_efficientnet_lite0",
        "model.decoder_channels": 32,
        "method.name": method,
        "optim.lr": 0.002,
        "train.epochs": 2,
        "train.iters_per_epoch": 3,
        "train.batch_size": 4,
        "train.log_every": 1,
        "train.probe_images": 4,
        "run_dir": str(run_dir),
    }
    settings.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in settings.items()]
