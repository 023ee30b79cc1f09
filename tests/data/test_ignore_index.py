"""``data.ignore_index`` is honoured everywhere: masks are read with it, and nothing else sees it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualteacher import load_model
from dualteacher.cli import main
from dualteacher.config import ConfigError, load_config
from dualteacher.data.check import check_config
from dualteacher.data.core import DataError, ignore_map
from dualteacher.data.registry import open_source
from dualteacher.inference.metrics import confusion_matrix, metrics_from_confusion
from dualteacher.training.loop import train

VAL_SIZES = [(41, 53), (37, 61), (50, 33), (45, 45)]


def _scene(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a red square (class 1) and a blue disc (class 2); every other pixel is 0, "unlabelled"."""
    image = rng.integers(0, 120, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), dtype=np.uint8)
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    image[top : top + height // 3, left : left + width // 3] = (230, 20, 20)
    mask[top : top + height // 3, left : left + width // 3] = 1
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - height * 0.6) ** 2 + (xx - width * 0.6) ** 2 < (min(height, width) / 5) ** 2
    image[disc], mask[disc] = (20, 20, 230), 2
    return image, mask


@pytest.fixture(scope="module")
def zero_unlabelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 train scenes (4 labelled) of 48x48 and 4 held-out scenes of different sizes (split ``holdout``;
    ``val`` lists two of them); mask value 0 = unlabelled."""
    root = tmp_path_factory.mktemp("zero") / "data"
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = {f"t{i}": (48, 48) for i in range(12)} | {f"v{i}": size for i, size in enumerate(VAL_SIZES)}
    for name, (height, width) in names.items():
        image, mask = _scene(rng, height, width)
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
    (root / "classes.txt").write_text("unlabelled\nsquare\ndisc\n")
    splits = {"labeled": range(4), "unlabeled": range(4, 12)}
    for split, ids in splits.items():
        (root / "splits" / f"{split}.txt").write_text("".join(f"t{i}\n" for i in ids))
    (root / "splits" / "holdout.txt").write_text("".join(f"v{i}\n" for i in range(len(VAL_SIZES))))
    (root / "splits" / "val.txt").write_text("v0\nv1\n")
    return root


def _overrides(root: Path, run_dir: Path) -> list[str]:
    return [
        f"data.root={root}",
        "data.ignore_index=0",
        "data.val_split=holdout",
        "data.crop_size=32",
        "data.workers=0",
        "data.val_batch_size=4",
        "model.encoder=resnet18",
        "model.decoder_channels=32",
        "method.name=dual_teacher",
        "optim.lr=0.01",
        "train.epochs=1",
        "train.iters_per_epoch=2",
        "train.batch_size=2",
        "train.probe_images=2",
        "train.keep=student",
        f"run_dir={run_dir}",
    ]


@pytest.mark.slow
def test_training_eval_and_an_independent_scorer_agree(zero_unlabelled: Path, tmp_path: Path, capsys) -> None:
    cfg = load_config(None, _overrides(zero_unlabelled, tmp_path / "run"))
    assert not check_config(cfg, full=True).findings  # class 0 absent from every mask is not a warning
    record = train(cfg, progress=False)
    best = tmp_path / "run" / "best.safetensors"
    scores = []
    for extra in ([], ["--batch-size", "1"]):
        capsys.readouterr()
        assert main(["eval", str(best), "--json", *extra]) == 0
        scores.append(json.loads(capsys.readouterr().out)["miou"])
    assert scores == [record["student/miou"]] * 2  # the run's val split, ignore value and protocol

    model = load_model(best)
    unlabelled_ignored = torch.zeros(3, 3, dtype=torch.int64)
    zero_is_a_class = torch.zeros(3, 3, dtype=torch.int64)
    for i in range(len(VAL_SIZES)):
        pred = torch.from_numpy(model.predict(zero_unlabelled / "images" / f"v{i}.png").astype(np.int64))
        mask = torch.from_numpy(np.array(Image.open(zero_unlabelled / "masks" / f"v{i}.png"))).long()
        unlabelled_ignored += confusion_matrix(pred, mask.masked_fill(mask == 0, 255), 3)
        zero_is_a_class += confusion_matrix(pred, mask, 3)
    assert metrics_from_confusion(unlabelled_ignored).miou == pytest.approx(record["student/miou"], abs=1e-12)
    assert metrics_from_confusion(zero_is_a_class).miou != pytest.approx(record["student/miou"])
    assert model.eval_dataset(ignore_index=255).miou == pytest.approx(metrics_from_confusion(zero_is_a_class).miou)


def test_masks_are_read_with_the_ignore_value(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    Image.fromarray(np.zeros((2, 4, 3), dtype=np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(np.array([[0, 1, 2, 255], [1, 1, 0, 0]], dtype=np.uint8)).save(tmp_path / "masks" / "a.png")
    Image.fromarray(np.array([[0, 7, 1, 1], [1, 1, 1, 1]], dtype=np.uint8)).save(tmp_path / "masks" / "b.png")
    Image.fromarray(np.zeros((2, 4, 3), dtype=np.uint8)).save(tmp_path / "images" / "b.png")
    (tmp_path / "classes.txt").write_text("unlabelled\nsquare\ndisc\n")
    data = open_source("folder", tmp_path, ignore_index=0).dataset(["a", "b"], labeled=True)
    assert data[0]["mask"].tolist() == [[255, 1, 2, 255], [1, 1, 255, 255]]  # 255 stays ignored too
    with pytest.raises(DataError, match=r"\[7\].*b\.png"):
        data[1]
    assert ignore_map(255) is None
    with pytest.raises(ValueError, match="256"):
        ignore_map(256)


def test_a_setting_that_cannot_be_honoured_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="data.ignore_index"):
        load_config(None, ["data.ignore_index=300"])
    with pytest.raises(DataError, match="data.ignore_index=0: only the folder layout"):
        open_source("voc", tmp_path, ignore_index=0)
