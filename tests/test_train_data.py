"""``dualteacher train --data ROOT --method NAME``: the built-in recipe fitted to a folder that
``init`` prepared, each choice printed, no YAML."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dualteacher.cli import main
from dualteacher.config import ConfigError
from dualteacher.data.core import DataError
from dualteacher.data.prepare import prepare_folder
from dualteacher.experiments.fitted import default_run_dir, plan_fitted
from dualteacher.experiments.recipe import ITERATIONS, WARMUP_ITERATIONS, run_length
from dualteacher.methods.common import PseudoLabelSettings

from scenes import own_folder

FAST = [
    "model.encoder=resnet18",
    "model.weights=null",
    "model.decoder_channels=16",
    "data.workers=0",
    "train.batch_size=2",
    "train.unlabeled_batch_size=2",
    "train.log_every=1",
    "train.probe_images=1",
]
"""A small random-init network and batches, so that a few iterations take seconds."""


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    root = own_folder(tmp_path / "leaves", count=10, masked=6)
    prepare_folder(root)
    return root


def test_the_plan_fits_the_recipe_and_says_so(prepared: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    plan = plan_fitted(str(prepared), "dual_teacher", iterations=20)
    cfg, warmup = plan.config, plan.warmup
    assert plan.account[0].startswith("data.labeled_split=labeled_masked, data.unlabeled_split=unlabeled_masked")
    assert plan.account[1].startswith(
        "data.crop_size=48: the recipe's 128 px would not fit; the smallest train image side is 48 px"
    )
    assert plan.account[2].startswith("data.val_batch_size=25: the recipe's 25")
    assert plan.account[3] == "20 iterations in all (--iterations)"
    assert plan.account[4].startswith(
        "warm start: 6 supervised iterations on labeled_masked first "
        f"({Path('runs/leaves_dual_teacher/warmup')}), then 14 of dual_teacher"
    )
    assert plan.account[5] == "run_dir=runs/leaves_dual_teacher (run_dir=DIR to change)"
    assert cfg.run_dir == str(default_run_dir(prepared, "dual_teacher")) == "runs/leaves_dual_teacher"
    assert cfg.data.crop_size == 48 and cfg.method.name == "dual_teacher" and cfg.data.root == str(prepared)
    assert cfg.method.init_from == "runs/leaves_dual_teacher/warmup" and warmup is not None
    assert warmup.method.name == "supervised" and warmup.run_dir == "runs/leaves_dual_teacher/warmup"
    assert run_length(warmup) == round(20 * WARMUP_ITERATIONS / ITERATIONS)
    assert (warmup.data.labeled_split, warmup.data.crop_size, warmup.model) == ("labeled_masked", 48, cfg.model)


def test_overrides_win_and_supervised_has_no_warm_up(prepared: Path) -> None:
    plan = plan_fitted(str(prepared), "supervised", overrides=["data.crop_size=24", "run_dir=/tmp/x", "optim.lr=0.01"])
    assert plan.warmup is None and plan.config.method.init_from is None
    assert run_length(plan.config) == ITERATIONS
    assert (plan.config.data.crop_size, plan.config.optim.lr, plan.config.run_dir) == (24, 0.01, "/tmp/x")
    assert (
        plan.account[1].startswith("data.crop_size=24: your override")
        and plan.account[-1] == "run_dir=/tmp/x: your override"
    )
    assert "warm start: none; supervised trains from the pretrained encoder" in plan.account[4]
    mine = plan_fitted(
        str(prepared), "mean_teacher", iterations=10, warmup=0, overrides=["method.threshold=0.8", "train.seed=4"]
    )
    assert isinstance(mine.config.method, PseudoLabelSettings)
    assert mine.warmup is None and mine.config.method.threshold == 0.8 and mine.config.train.seed == 4
    warm = plan_fitted(str(prepared), "mean_teacher", iterations=10, overrides=["method.threshold=0.8", "train.seed=4"])
    assert warm.warmup is not None and warm.warmup.train.seed == 4 and warm.warmup.method.name == "supervised"


def test_errors_end_with_the_command_that_fixes_them(tmp_path: Path) -> None:
    raw = own_folder(tmp_path / "raw")
    with pytest.raises(DataError, match=rf"classes\.txt.*train\.txt.*val\.txt.*run: dualteacher init --data {raw}$"):
        plan_fitted(str(raw), "dual_teacher")
    full = own_folder(tmp_path / "full", count=8, masked=8)
    prepare_folder(full)
    with pytest.raises(DataError, match=rf"none is unlabelled.*run: dualteacher split --data {full} --labeled 1/8"):
        plan_fitted(str(full), "dual_teacher")
    assert plan_fitted(str(full), "supervised").config.data.labeled_split == "train"
    with pytest.raises(ConfigError, match="override data.root: train --data sets it; use --data"):
        plan_fitted(str(full), "supervised", overrides=["data.root=/elsewhere"])
    with pytest.raises(ConfigError, match="--warmup 5 leaves none of the 5 iterations"):
        plan_fitted(str(full), "supervised", iterations=5, warmup=5)
    with pytest.raises(ConfigError, match="is not one of"):
        plan_fitted(str(full), "dual_teachr")


def test_the_cli_refuses_half_given_options(prepared: Path, capsys) -> None:
    assert main(["train", "--data", str(prepared)]) == 2
    assert f"run: dualteacher train --data {prepared} --method mean_teacher" in capsys.readouterr().err
    assert main(["train", "digits_supervised", "--method", "supervised"]) == 2
    assert "set method.name=supervised instead" in capsys.readouterr().err
    assert main(["train", "--iterations", "5", "train.epochs=1"]) == 2
    assert "--iterations goes with --data ROOT --method NAME" in capsys.readouterr().err


@pytest.mark.slow
def test_train_data_warm_starts_prints_its_choices_and_ends_with_the_checkpoint(
    prepared: Path, tmp_path: Path, capsys
) -> None:
    run_dir = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(prepared),
        "--method",
        "mean_teacher",
        "--iterations",
        "5",
        "--quiet",
        *FAST,
        f"run_dir={run_dir}",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out.rstrip().splitlines()
    assert out[0].startswith("recipe: data.labeled_split=labeled_masked")
    assert any(line.strip().startswith("data.crop_size=48: the recipe's 128 px would not fit") for line in out)
    assert any("warm start: 2 supervised iterations on labeled_masked first" in line for line in out)
    assert f"training the warm-up: 2 supervised iterations in {run_dir / 'warmup'}" in out
    assert f"training mean_teacher: 3 iterations in {run_dir}" in out
    assert out[-1] == f"best network: {run_dir / 'best.safetensors'}" and (run_dir / "best.safetensors").is_file()
    assert (run_dir / "warmup" / "last.safetensors").is_file()
    saved = (run_dir / "config.yaml").read_text()
    assert f"init_from: {run_dir / 'warmup'}" in saved and "labeled_split: labeled_masked" in saved
    assert main(argv) == 0  # the same command again: both runs are finished, nothing trains
    assert capsys.readouterr().out.rstrip().endswith(f"best network: {run_dir / 'best.safetensors'}")


@pytest.mark.slow
def test_train_data_minutes_sizes_the_run_from_a_probe_kept_for_the_next_call(
    prepared: Path, tmp_path: Path, capsys
) -> None:
    run_dir = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(prepared),
        "--method",
        "supervised",
        "--minutes",
        "0.02",
        "--quiet",
        *FAST,
        "train.eval_every=100",
        f"run_dir={run_dir}",
    ]
    assert main(argv) == 0
    probe = json.loads((run_dir / "probe.json").read_text())
    iterations = max(1, round(0.02 * 60 / probe["s_per_iteration"]))
    out = capsys.readouterr().out
    assert f"{iterations} iterations in all: --minutes 0.02 at {probe['s_per_iteration']:.3f} s per supervised" in out
    assert out.rstrip().endswith(f"best network: {run_dir / 'best.safetensors'}")
    assert main(argv) == 0  # the stored probe: the same length, so the finished run is found
    assert "measured before" in capsys.readouterr().out
