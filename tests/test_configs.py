"""Shipped configs load, from the package's resources as from their checkout paths, and the digit
configs are exactly the shared recipe."""

from pathlib import Path

import pytest

from dualteacher.config import ConfigError, load_config, shipped_configs
from dualteacher.experiments.recipe import recipe_config, run_length
from dualteacher.registry import METHODS

CONFIGS = shipped_configs()
DIGIT_CONFIGS = [name.removeprefix("digits_") for name in CONFIGS if name.startswith("digits_")]


def test_the_configs_ship_inside_the_package() -> None:
    assert {"voc_classic_r101", "digits_dual_teacher", "digits_mean_teacher"} <= set(CONFIGS)
    assert not (Path(__file__).parents[1] / "configs").exists()  # one copy only: src/dualteacher/configs


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_is_valid(name: str) -> None:
    cfg = load_config(name)
    assert cfg.run_dir.startswith("runs/") and cfg.data.root, name


def test_a_config_loads_by_name_file_name_or_checkout_path_from_any_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no configs/ folder here, as for a user of an installed wheel
    by_name = load_config("voc_classic_r101")
    assert by_name.data.dataset == "voc" and by_name.model.encoder == "tu-resnet101s"
    assert load_config("voc_classic_r101.yaml") == by_name == load_config("configs/voc_classic_r101.yaml")
    assert load_config("configs/voc_classic_r101.yaml", ["train.epochs=3"]).train.epochs == 3


def test_a_file_of_the_same_name_wins_over_the_shipped_config(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "voc_classic_r101.yaml").write_text("train:\n  epochs: 7\n")
    assert load_config("configs/voc_classic_r101.yaml").train.epochs == 7


def test_an_unknown_config_lists_the_shipped_ones(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        ConfigError, match=r"configs/voc_clasic\.yaml does not exist; shipped configs: .*voc_classic_r101"
    ):
        load_config("configs/voc_clasic.yaml")
    with pytest.raises(ConfigError, match="elsewhere/voc_classic_r101.yaml does not exist"):
        load_config("elsewhere/voc_classic_r101.yaml")  # only a bare name or configs/NAME means a shipped config


def test_configs_do_not_share_run_directories() -> None:
    run_dirs = [load_config(name).run_dir for name in CONFIGS]
    assert len(run_dirs) == len(set(run_dirs))


@pytest.mark.parametrize("method", DIGIT_CONFIGS)
def test_digit_configs_match_the_recipe(method: str) -> None:
    assert method in METHODS
    shipped = load_config(f"digits_{method}")
    recipe = recipe_config(
        Path(shipped.data.root),
        shipped.data.labeled_split,
        shipped.data.unlabeled_split,
        method,
        Path(shipped.run_dir),
        run_length(shipped),
        shipped.train.seed,
    )
    assert shipped == recipe
