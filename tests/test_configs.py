"""Shipped configs load, and the digit configs are exactly the demo's settings."""

from pathlib import Path

import pytest

from dualteacher.config import load_config
from dualteacher.demo import demo_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_is_valid(path: Path) -> None:
    load_config(path)


@pytest.mark.parametrize("method", ["supervised", "mean_teacher", "dual_teacher"])
def test_digit_configs_match_the_demo(method: str) -> None:
    shipped = load_config(Path(__file__).parents[1] / "configs" / f"digits_{method}.yaml")
    demo = demo_config(
        Path(shipped.data.root), shipped.data.labeled_split, shipped.data.unlabeled_split, method,
        Path(shipped.run_dir), shipped.train.epochs * shipped.train.iters_per_epoch, shipped.train.seed,
    )
    assert shipped == demo
