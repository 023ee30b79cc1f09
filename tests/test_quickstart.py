"""The README's quick start, run as a user runs it: the wheel installed into a fresh virtual
environment (torch from constraints.txt, nothing editable, the repository not on the path), an
empty folder holding only ``mydata/images/`` and ``mydata/masks/`` (binary masks saved as 0/255,
as annotation tools write them), and the commands taken from README.md with the one substitution
of :data:`quickstart_block.SHORT_RUN`."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from packaging_utils import installed_venv, run, venv_bin, wheel  # noqa: F401  (fixtures)
from quickstart_block import short_quickstart

SIDE, IMAGES, MASKS = 64, 12, 6
RUN_DIR = Path("runs") / "mydata_mean_teacher"
COMMAND_SECONDS = 600


def binary_folder(root: Path) -> Path:
    """``root/images``: 12 noisy 64x64 photos (PNG and JPEG) with a red square each;
    ``root/masks``: 0/255 masks (the square 255) for the first 6. Nothing else."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for k in range(IMAGES):
        image = rng.integers(0, 120, (SIDE, SIDE, 3), dtype=np.uint8)
        mask = np.zeros((SIDE, SIDE), np.uint8)
        x, y = rng.integers(4, SIDE - 24, 2)
        image[y : y + 20, x : x + 20] = (220, 40, 40)
        mask[y : y + 20, x : x + 20] = 255
        Image.fromarray(image).save(root / "images" / f"leaf{k:02d}.{'jpg' if k % 2 else 'png'}", quality=95)
        if k < MASKS:
            Image.fromarray(mask).save(root / "masks" / f"leaf{k:02d}.png")
    return root


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.slow
def test_the_readme_quick_start_runs_from_the_wheel_on_binary_masks(
    installed_venv: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    data = binary_folder(project / "mydata")
    masks_before = digest(data / "masks")
    env = {
        "PATH": f"{venv_bin(installed_venv, 'python').parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "2",
    }
    where = run(["python", "-c", "import dualteacher; print(dualteacher.__file__)"], cwd=project, env=env).stdout
    assert Path(where.strip()).is_relative_to(installed_venv), where  # the wheel, not the checkout
    out: dict[str, str] = {}
    for command in short_quickstart():
        verb = shlex.split(command)[1]
        result = run(["bash", "-c", command], cwd=project, env=env, timeout=COMMAND_SECONDS, check=False)
        assert result.returncode == 0, (
            f"{command} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
        out[verb] = result.stdout
    assert list(out) == ["init", "check-data", "train", "eval", "predict"]

    assert json.loads((data / "mask_values.json").read_text()) == {"0": 0, "255": 1}
    assert "mask_values.json: 0 -> 0 (background), 255 -> 1 (foreground)" in out["init"]
    assert "mask values read through mask_values.json: 0 -> 0 (background), 255 -> 1 (foreground)" in out["check-data"]
    assert out["check-data"].rstrip().endswith("0 errors, 0 warnings, 0 notes")
    assert digest(data / "masks") == masks_before and sorted(os.listdir(data / "masks")) == sorted(masks_before)

    checkpoint = project / RUN_DIR / "best.safetensors"
    assert checkpoint.is_file() and out["train"].rstrip().endswith(f"best network: {RUN_DIR / 'best.safetensors'}")
    assert "4 iterations in all (--iterations)" in out["train"]

    score = re.search(r"\): mIoU (\d+\.\d+), pixel accuracy (\d+\.\d+)", out["eval"])
    assert score, out["eval"]
    miou = float(score.group(1))
    assert 0.0 <= miou <= 1.0
    assert re.search(r"^\s+foreground\s+(\d\.\d+|absent)$", out["eval"], re.MULTILINE), out[
        "eval"
    ]  # 255 scored as class 1

    predictions = project / "predictions"
    images = sorted(p.stem for p in (data / "images").iterdir())
    assert sorted(p.stem for p in predictions.glob("*.png")) == images
    listed = json.loads((predictions / "predictions.json").read_text())
    assert listed["classes"] == ["background", "foreground"]
    assert sorted(Path(r["input"]).stem for r in listed["images"]) == images
    for path in predictions.glob("*.png"):
        with Image.open(path) as predicted:
            assert predicted.size == (SIDE, SIDE) and set(np.unique(np.asarray(predicted)).tolist()) <= {0, 1}
