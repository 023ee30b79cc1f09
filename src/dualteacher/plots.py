"""Figures: the demo comparison (mIoU curves, coupling curves, predictions on val scenes)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from .data.folder import find_image, load_image, read_split  # noqa: E402
from .inference import load_model  # noqa: E402
from .runlog import read_log  # noqa: E402


def palette(num_classes: int) -> np.ndarray:
    """``[256, 3]`` uint8 colours: the PASCAL VOC bit-interleaving scheme, 255 (ignore) white."""
    colours = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours[i] = (r, g, b)
    colours[255] = (255, 255, 255)
    return colours


def _eval_records(run_dir: Path) -> list[dict]:
    return [r for r in read_log(run_dir) if r.get("type") == "eval"]


def demo_figure(out: Path, methods: list[str], data_root: Path, scenes: int = 4) -> Path:
    """Write ``out/demo.png``: mIoU over training, coupling over training, example predictions."""
    fig = plt.figure(figsize=(15, 4 + 2.2 * scenes))
    grid = fig.add_gridspec(1 + scenes, len(methods) + 2, height_ratios=[2.2] + [1.0] * scenes)

    ax = fig.add_subplot(grid[0, : (len(methods) + 2) // 2])
    for method in methods:
        recs = _eval_records(out / method)
        its = [r["iteration"] for r in recs]
        line = ax.plot(its, [r["student/miou"] for r in recs], label=f"{method} student")[0]
        teacher_keys = sorted({k for r in recs for k in r if k.endswith("/miou") and not k.startswith("student")})
        for key in teacher_keys:
            ax.plot(its, [r.get(key, np.nan) for r in recs], "--", color=line.get_color(), alpha=0.6,
                    label=f"{method} {key.split('/')[0]}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("val mIoU")
    ax.set_title("val mIoU over training")
    ax.legend(fontsize=7)

    ax = fig.add_subplot(grid[0, (len(methods) + 2) // 2 :])
    for method in methods:
        recs = _eval_records(out / method)
        keys = sorted({k for r in recs for k in r if k.startswith("coupling/") and k.endswith("/disagreement")})
        for key in keys:
            ax.plot([r["iteration"] for r in recs], [r.get(key, np.nan) for r in recs],
                    label=f"{method} {key.split('/')[1]}")
    ax.set_xlabel("iteration")
    ax.set_ylabel("teacher-student argmax disagreement")
    ax.set_title("coupling on unlabelled probe images (0 = teacher copies student)")
    ax.legend(fontsize=7)

    models = {m: load_model(out / m / "best.safetensors") for m in methods}
    colours = palette(len(next(iter(models.values())).classes))
    ids = read_split(data_root, "val")[:scenes]
    for row, sample_id in enumerate(ids, start=1):
        image = np.array(load_image(find_image(data_root, sample_id)))
        mask = np.asarray(Image.open(data_root / "masks" / f"{sample_id}.png"))
        x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
        panels = [("image", image), ("ground truth", colours[mask])]
        for method, model in models.items():
            pred = model.logits(x).argmax(1)[0].numpy()
            panels.append((f"{method} ({model.role})", colours[pred]))
        for col, (title, picture) in enumerate(panels):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(picture, interpolation="nearest")
            ax.set_axis_off()
            if row == 1:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = out / "demo.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
