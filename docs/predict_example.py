"""Compose docs/predict_example.png from the outputs of ``dualteacher predict --overlay``.

    dualteacher predict runs/demo/dual_teacher/best.safetensors \
        ~/.cache/dualteacher/digits-s64-t3000-v500-seed0/images/val_0000[0-5].png --out /tmp/pred --overlay
    python docs/predict_example.py /tmp/pred docs/predict_example.png
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from dualteacher.inference.colors import palette


def main(out: Path, target: Path) -> None:
    """Rows: input image, predicted class map, overlay; one column per image predict wrote."""
    records = json.loads((out / "predictions.json").read_text())["images"]
    colours = palette(256)
    fig, axes = plt.subplots(3, len(records), figsize=(2.0 * len(records), 6.3), squeeze=False)
    for col, record in enumerate(records):
        mask = np.asarray(Image.open(out / record["mask"]))
        rows = [
            ("image", np.asarray(Image.open(record["input"]).convert("RGB"))),
            ("predicted class map", colours[mask]),
            ("overlay", np.asarray(Image.open(out / record["overlay"]))),
        ]
        for row, (name, picture) in enumerate(rows):
            ax = axes[row, col]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(target, dpi=80)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
