"""Shipped configs load, and the digit configs are exactly the shared recipe."""

from pathlib import Path

import pytest

from dualteacher.config import load_config
from dualteacher.experiments.recipe import recipe_config
from dualteacher.registry import METHODS

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_is_valid(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.run_dir.startswith("runs/") and cfg.data.root, path.name


def test_configs_do_not_share_run_directories() -> None:
    run_dirs = [load_config(p).run_dir for p in CONFIGS]
    assert len(run_dirs) == len(set(run_dirs))


@pytest.mark.parametrize("method", list(METHODS))
def test_digit_configs_match_the_recipe(method: str) -> None:
    shipped = load_config(Path(__file__).parents[1] / "configs" / f"digits_{method}.yaml")
    recipe = recipe_config(
        Path(shipped.data.root), shipped.data.labeled_split, shipped.data.unlabeled_split, method,
        Path(shipped.run_dir), shipped.train.epochs * shipped.train.iters_per_epoch, shipped.train.seed,
    )
    assert shipped == recipe
