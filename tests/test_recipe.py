"""The shared recipe: its schedule, and how it adapts to the data it is given."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualteacher.config import load_config
from dualteacher.data.core import DataError
from dualteacher.data.registry import open_source
from dualteacher.experiments.recipe import RECIPE, adapt_recipe, schedule


def folder_data(root: Path, train: list[tuple[int, int]], val: list[tuple[int, int]]) -> Path:
    """A folder-layout dataset whose images have the given (width, height)."""
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True)
    (root / "classes.txt").write_text("background\nthing\n")
    for split, sizes in (("train", train), ("val", val)):
        ids = [f"{split}_{i}" for i in range(len(sizes))]
        for sample_id, (width, height) in zip(ids, sizes):
            Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(root / "images" / f"{sample_id}.png")
            Image.fromarray(np.zeros((height, width), np.uint8)).save(root / "masks" / f"{sample_id}.png")
        (root / "splits" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


@pytest.mark.parametrize("iterations", [1, 49, 300, 733, 1000, 2517])
def test_schedule_fits_the_budget_in_recipe_sized_epochs(iterations: int) -> None:
    settings = dict(s.split("=") for s in schedule(iterations))
    epochs, per_epoch = int(settings["train.epochs"]), int(settings["train.iters_per_epoch"])
    assert abs(epochs * per_epoch - iterations) <= max(epochs // 2, 0)
    assert iterations < 25 or 33 <= per_epoch <= 75


def test_crop_never_exceeds_the_smallest_train_image(tiny_data) -> None:
    source = open_source("folder", tiny_data["root"])
    adapted = adapt_recipe(source, ["train"], "val")
    recipe = load_config(None, RECIPE).data
    assert recipe.crop_size > 48
    assert "data.crop_size=48" in adapted.overrides
    assert f"data.val_batch_size={recipe.val_batch_size}" in adapted.overrides
    assert adapted.account[0].startswith(
        f"data.crop_size=48: the recipe's {recipe.crop_size} px would not fit; the smallest train image side is 48 px"
    )


def test_large_val_images_get_a_smaller_val_batch_and_the_users_settings_win(tmp_path: Path) -> None:
    recipe = load_config(None, RECIPE).data
    side = recipe.crop_size + 16
    source = open_source(
        "folder", folder_data(tmp_path / "d", [(side + 20, side), (side + 10, side + 40)], [(1280, 800), (64, 64)])
    )
    adapted = adapt_recipe(source, ["train"], "val")
    assert recipe.val_batch_size * recipe.crop_size**2 < 1280 * 800  # so a val batch of one image is the most
    assert adapted.overrides == [f"data.crop_size={recipe.crop_size}", "data.val_batch_size=1"]
    assert f"the recipe's; the smallest train image side is {side} px" in adapted.account[0]
    assert "largest val image is 1280x800" in adapted.account[1]
    mine = adapt_recipe(source, ["train"], "val", ["data.crop_size=96"])
    assert mine.overrides == ["data.val_batch_size=1"]
    assert mine.account[0].startswith("data.crop_size=96: your override")


def test_an_image_too_small_to_crop_is_named(tmp_path: Path) -> None:
    source = open_source("folder", folder_data(tmp_path / "d", [(100, 80), (5, 40)], [(64, 64)]))
    with pytest.raises(DataError, match=r"train_1\.png is 5x40"):
        adapt_recipe(source, ["train"], "val")
