"""Your own data, from Python: a folder of images with masks for some of them becomes split lists
(``dualteacher init``), then a Mean Teacher run with the shared recipe, its val mIoU and one
prediction on an image nobody annotated.

    python examples/train_own_data.py --out runs/example           # the recipe's network, 200 iterations
    python examples/train_own_data.py --out /tmp/example --tiny    # a small network, 4 iterations, seconds

The folder is made here from the built-in digit scenes (real MNIST digits on real textures; needs
the ``demo`` extra): ``mydata/images/`` holds every scene, ``mydata/masks/`` the masks of a quarter
of them, as after annotating some of your photos. With your own folder, skip :func:`make_folder`.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from dualteacher import load_model, prepare_folder, train
from dualteacher.data.digits import CLASS_NAMES, generate_digit_scenes
from dualteacher.inference.colors import colorize

TINY = [
    "model.encoder=resnet18",
    "model.weights=null",
    "model.decoder_channels=16",
    "data.workers=0",
    "train.batch_size=2",
    "train.unlabeled_batch_size=2",
    "train.log_every=1",
    "train.probe_images=1",
]
"""A small random-init network and batches, so that the run takes seconds (the test's settings)."""


def make_folder(root: Path, scenes: int, masked: int, size: int) -> Path:
    """``root/images/scene_NNN.png`` for ``scenes`` digit scenes of ``size`` px and
    ``root/masks/scene_NNN.png`` (class indices) for the first ``masked`` of them."""
    with tempfile.TemporaryDirectory() as scratch:
        made = generate_digit_scenes(Path(scratch) / "digits", num_train=scenes, num_val=1, size=size, seed=0)
        ids = (made / "splits" / "train.txt").read_text().split()
        (root / "images").mkdir(parents=True)
        (root / "masks").mkdir()
        for k, sample_id in enumerate(ids):
            shutil.copy(made / "images" / f"{sample_id}.png", root / "images" / f"scene_{k:03d}.png")
            if k < masked:
                shutil.copy(made / "masks" / f"{sample_id}.png", root / "masks" / f"scene_{k:03d}.png")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the data, the run and the prediction")
    parser.add_argument("--tiny", action="store_true", help="a small network and 4 iterations (seconds)")
    parser.add_argument("--iterations", type=int, help="training iterations in all (default: 200, --tiny: 4)")
    args = parser.parse_args()
    iterations = args.iterations or (4 if args.tiny else 200)

    # 1. the folder: images/ for every photo, masks/ for the annotated ones (same name, .png)
    root = args.out / "mydata"
    if not root.exists():
        make_folder(root, scenes=16 if args.tiny else 300, masked=8 if args.tiny else 80, size=48 if args.tiny else 96)
    # 2. dualteacher init: classes.txt and the split lists (val drawn from the masked images)
    print(prepare_folder(root, classes=CLASS_NAMES).format())

    # 3. dualteacher train --data ROOT --method mean_teacher --iterations N: a supervised warm-up on
    #    the masked images, then Mean Teacher on all of them; the same call again continues the run
    run = train(
        data=root,
        method="mean_teacher",
        iterations=iterations,
        overrides=[f"run_dir={args.out / 'run'}", *(TINY if args.tiny else [])],
    )
    if run.interrupted:
        raise SystemExit(f"stopped by {run.interrupted}: run the same command again to continue")

    # 4. the best network, scored on the val split it was trained with
    model = load_model(run.best)
    metrics = model.eval_dataset()
    print(f"{run.best}: val mIoU {metrics.miou:.3f}, pixel accuracy {metrics.pixel_accuracy:.3f}")

    # 5. one image without a mask: [H, W] class indices, saved in the class colours
    annotated = {path.name for path in (root / "masks").iterdir()}
    image = next(path for path in sorted((root / "images").iterdir()) if path.name not in annotated)
    mask = model.predict(image)
    found = {model.classes[c] for c in sorted(set(mask.flat))}
    out = args.out / f"{image.stem}_classes.png"
    Image.fromarray(colorize(mask, model.palette)).save(out)
    print(f"{image.name}: {mask.shape[1]}x{mask.shape[0]} class map with {', '.join(sorted(found))}; wrote {out}")


if __name__ == "__main__":
    main()
