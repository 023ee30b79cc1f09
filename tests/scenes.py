"""The tiny dataset of issue 14: 48x48 scenes, a red square (class 1) and a blue disc (class 2)
on noise, 3 classes, 12 train ids of which 4 labelled, 4 val ids; and its tiny training settings
(resnet18 from random init, crop 32, a few iterations)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dualteacher.config import Config, load_config

SIZE = 48
CLASSES = ["background", "square", "disc"]


def _scene(seed: int, foreground: int = 1, disc: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a red square (mask ``foreground``) and a blue disc (mask ``disc``)."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 120, (SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    x, y = rng.integers(2, 20, 2)
    image[y : y + 14, x : x + 14] = (220, 30, 30)
    mask[y : y + 14, x : x + 14] = foreground
    yy, xx = np.mgrid[:SIZE, :SIZE]
    disc_pixels = (yy - 34) ** 2 + (xx - 34) ** 2 < 8**2
    image[disc_pixels] = (30, 30, 220)
    mask[disc_pixels] = disc
    return image, mask


def make_scenes(root: Path, classes: list[str] = CLASSES, foreground: int = 1, disc: int = 2) -> Path:
    """The issue's tiny folder dataset: train000..train011 (4 labelled), val000..val003."""
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir(parents=True)
    (root / "classes.txt").write_text("".join(f"{name}\n" for name in classes))
    ids = [f"train{i:03d}" for i in range(12)] + [f"val{i:03d}" for i in range(4)]
    for k, sample_id in enumerate(ids):
        image, mask = _scene(k, foreground, disc)
        Image.fromarray(image).save(root / "images" / f"{sample_id}.png")
        Image.fromarray(mask).save(root / "masks" / f"{sample_id}.png")
    for name, listed in (("labeled", ids[:4]), ("unlabeled", ids[4:12]), ("val", ids[12:])):
        (root / "splits" / f"{name}.txt").write_text("".join(f"{i}\n" for i in listed))
    return root


def scenes_config(root: Path, run_dir: Path, **extra: object) -> Config:
    """The issue's tiny settings (supervised, 1 epoch of 2 iterations) on ``root``; ``extra``
    overrides them, ``__`` standing for ``.`` (``train__epochs=2``)."""
    settings: dict[str, object] = {
        "data.root": root,
        "data.crop_size": 32,
        "data.workers": 0,
        "data.val_batch_size": 2,
        "model.encoder": "resnet18",
        "model.decoder_channels": 16,
        "method.name": "supervised",
        "train.epochs": 1,
        "train.iters_per_epoch": 2,
        "train.batch_size": 2,
        "train.log_every": 1,
        "train.probe_images": 1,
        "run_dir": run_dir,
    }
    settings.update({k.replace("__", "."): v for k, v in extra.items()})
    return load_config(None, [f"{k}={v}" for k, v in settings.items()])


def own_folder(root: Path, count: int = 10, masked: int = 6, *, foreground: int = 1, disc: int = 2) -> Path:
    """What a user has before ``dualteacher init``: ``images/img00..`` (JPEG for odd ids, PNG for
    even ones) and ``masks/`` for the first ``masked`` ids (img00's top rows 255, ignore); no
    class list, no split lists."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(count):
        image, mask = _scene(k, foreground, disc)
        Image.fromarray(image).save(root / "images" / f"img{k:02d}.{'jpg' if k % 2 else 'png'}")
        if k < masked:
            if k == 0:
                mask[:2] = 255
            Image.fromarray(mask).save(root / "masks" / f"img{k:02d}.png")
    return root
