"""The protocol study: which lever makes the built-in benchmark label-limited on 2 CPU cores.

Three measurements, each printed as a table row (and kept in ``OUT/study.json``, so a second call
re-runs nothing that finished):

  oracle      the mIoU ceiling of a stride-4 decoder on a scene style: one-hot val masks averaged
              over 4×4 cells, upsampled bilinearly and arg-maxed (DeepLabV3+ predicts at stride 4);
  classifier  how fast the ImageNet EfficientNet-Lite0 learns *which* digit a one-digit scene shows
              (global pooling + linear head, AdamW 1e-3, batch 8): val accuracy after N iterations;
  train       supervised training with the shared recipe (:mod:`dualteacher.experiments.recipe`) plus the row's
              overrides: final val mIoU, with every train scene or a labelled fraction.

    python benchmarks/protocol_study.py                 # every row (about 1.5 hours alone)
    python benchmarks/protocol_study.py --rows oracle   # rows whose name starts with a prefix

``--iterations N`` gives every classifier and train row N iterations, ``--scenes TRAIN VAL`` generates
that many scenes per style and size instead of 3000 and 500, and ``key=value`` overrides go after
every train row's own; any of them keeps its results and runs apart, in ``OUT/study_<hash>.json`` and
``RUNS/study_<hash>/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dualteacher.data.digits import SceneStyle, ensure_digit_scenes
from dualteacher.data.registry import open_source
from dualteacher.data.split_files import split_source
from dualteacher.data.splits import parse_labeled
from dualteacher.experiments.recipe import recipe_config
from dualteacher.runlog import read_log
from dualteacher.training.loop import train

V2 = SceneStyle(max_digits=4, digit_size=(26 / 64, 48 / 64), stroke=0, overlap=True)
V3 = SceneStyle()
FLAT = "data.scale_range=[1.0, 1.0]"


@dataclass
class Row:
    """One measurement: ``kind`` oracle | classifier | train on scenes of ``size`` px in ``style``."""

    name: str
    kind: str
    size: int = 128
    style: SceneStyle = V3
    labeled: str = "all"
    iterations: int = 1000
    overrides: list[str] = field(default_factory=list)


def _at(size: int) -> list[str]:
    return [f"data.crop_size={size}", "data.val_batch_size=25"]


ROWS = [
    Row("oracle v2 (4 overlapping thin digits) 64 px", "oracle", 64, V2),
    Row("oracle v3 (whole digits, stroke 1) 64 px", "oracle", 64, V3),
    Row("oracle v3 stroke 2, 64 px", "oracle", 64, SceneStyle(stroke=2)),
    Row("oracle v3 128 px", "oracle", 128, V3),
    *[Row(f"classifier {s} px, 400 iterations", "classifier", s, iterations=400) for s in (64, 96, 128)],
    Row(
        "train 64 px, all labelled, ASPP dropout 0.5, 400 its",
        "train",
        64,
        iterations=400,
        overrides=[*_at(64), "data.scale_range=[0.75, 1.5]", "model.aspp_dropout=0.5"],
    ),
    Row(
        "train 64 px, all labelled, no ASPP dropout, 400 its",
        "train",
        64,
        iterations=400,
        overrides=[*_at(64), "data.scale_range=[0.75, 1.5]"],
    ),
    Row(
        "train 64 px, all labelled, no dropout, no rescaling, 400 its",
        "train",
        64,
        iterations=400,
        overrides=[*_at(64), FLAT],
    ),
    Row(
        "train 64 px, all labelled, no dropout, lr 3e-3, 400 its",
        "train",
        64,
        iterations=400,
        overrides=[*_at(64), "data.scale_range=[0.75, 1.5]", "optim.lr=0.003"],
    ),
    Row(
        "train 64 px, all labelled, no dropout, lr 3e-4, 400 its",
        "train",
        64,
        iterations=400,
        overrides=[*_at(64), "data.scale_range=[0.75, 1.5]", "optim.lr=0.0003"],
    ),
    Row(
        "train 64 px, all labelled, no dropout, output stride 8, 400 its",
        "train",
        64,
        iterations=400,
        overrides=[*_at(64), "data.scale_range=[0.75, 1.5]", "model.output_stride=8"],
    ),
    Row("train 96 px, all labelled, 600 its", "train", 96, iterations=600, overrides=_at(96)),
    Row(
        "train 128 px, all labelled, batch 4, 2000 its", "train", 128, iterations=2000, overrides=["train.batch_size=4"]
    ),
    Row("train 128 px, all labelled (the recipe)", "train", 128),
    Row("train 128 px, 1/16 labelled (the recipe)", "train", 128, labeled="1/16"),
    Row("train 128 px, 1/32 labelled (the recipe)", "train", 128, labeled="1/32"),
]


def _miou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Mean IoU over the classes present in ``pred`` or ``target``."""
    ious = []
    for c in range(num_classes):
        union = ((pred == c) | (target == c)).sum().item()
        if union:
            ious.append(((pred == c) & (target == c)).sum().item() / union)
    return float(np.mean(ious))


def oracle(root: Path, stride: int = 4, count: int = 300) -> dict:
    """The stride-``stride`` ceiling on the first ``count`` val masks of ``root``."""
    ids = (root / "splits" / "val.txt").read_text().split()[:count]
    masks = torch.stack([torch.from_numpy(np.array(Image.open(root / "masks" / f"{i}.png"))).long() for i in ids])
    onehot = F.one_hot(masks, 11).permute(0, 3, 1, 2).float()
    low = F.avg_pool2d(onehot, stride)
    pred = F.interpolate(low, size=masks.shape[-2:], mode="bilinear", align_corners=False).argmax(1)
    return {"miou": _miou(pred, masks, 11), "foreground": float((masks > 0).float().mean())}


def classifier(root: Path, iterations: int, seed: int = 0) -> dict:
    """Val accuracy of EfficientNet-Lite0 (ImageNet) classifying one-digit scenes after ``iterations``."""
    import timm

    from dualteacher.models.pretrained import efficientnet_lite0_imagenet_state_dict

    torch.manual_seed(seed)
    records = json.loads((root / "scenes.json").read_text())

    def load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        ids = [i for i in (root / "splits" / f"{split}.txt").read_text().split() if len(records[i]) == 1]
        images = np.stack([np.asarray(Image.open(root / "images" / f"{i}.png").convert("RGB")) for i in ids])
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        return (x - 0.5) / 0.5, torch.tensor([records[i][0]["digit"] for i in ids])

    (xt, yt), (xv, yv) = load("train"), load("val")
    net = timm.create_model("tf_efficientnet_lite0", num_classes=10)
    weights = {k: v for k, v in efficientnet_lite0_imagenet_state_dict().items() if not k.startswith("classifier")}
    net.load_state_dict(weights, strict=False)
    optimizer = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=0.01)
    for _ in range(iterations):
        index = torch.randint(0, len(xt), (8,))
        loss = F.cross_entropy(net(xt[index]), yt[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    with torch.no_grad():
        accuracy = torch.cat([net(x).argmax(1) for x in xv.split(100)]).eq(yv).float().mean().item()
    return {"accuracy": accuracy}


def supervised(row: Row, root: Path, runs: Path) -> dict:
    """Train the recipe with the row's overrides; final and last-third val mIoU."""
    if row.labeled == "all":
        labeled = unlabeled = "train"
    else:
        lab, unl = split_source(open_source("folder", root), parse_labeled(row.labeled), 0)
        labeled, unlabeled = lab.stem, unl.stem
    run = runs / "".join(c if c.isalnum() else "_" for c in row.name)
    cfg = recipe_config(
        root, labeled, unlabeled, "supervised", run, row.iterations, 0, ["train.probe_images=0", *row.overrides]
    )
    train(cfg, progress=False)
    evals = [r for r in read_log(run) if r["type"] == "eval"]
    last_third = [r["student/miou"] for r in evals if r["iteration"] >= 2 * row.iterations / 3]
    return {
        "miou": evals[-1]["student/miou"],
        "last_third_range": max(last_third) - min(last_third),
        "train_seconds": evals[-1]["train_seconds"],
    }


def measure(row: Row, runs: Path, scenes: tuple[int, int] = (3000, 500)) -> dict:
    """The row's measurement on ``scenes`` (train, val) digit scenes of its size and style (generated
    into the cache if missing), with the seconds it took."""
    root = ensure_digit_scenes(num_train=scenes[0], num_val=scenes[1], size=row.size, style=row.style)
    start = time.perf_counter()
    if row.kind == "oracle":
        result = oracle(root)
    elif row.kind == "classifier":
        result = classifier(root, row.iterations)
    else:
        result = supervised(row, root, runs)
    return {**result, "seconds": time.perf_counter() - start}


def build_parser() -> argparse.ArgumentParser:
    """The script's options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/protocol_study"))
    parser.add_argument("--runs", type=Path, default=Path("runs/protocol_study"))
    parser.add_argument("--rows", nargs="*", default=[], help="only rows whose name starts with one of these")
    parser.add_argument(
        "--iterations", type=int, help="iterations of every classifier and train row (default: the row's)"
    )
    parser.add_argument(
        "--scenes",
        type=int,
        nargs=2,
        default=[3000, 500],
        metavar=("TRAIN", "VAL"),
        help="digit scenes generated per size and style (default: 3000 500)",
    )
    parser.add_argument("overrides", nargs="*", default=[], help="key=value settings after every train row's own")
    return parser


def results_name(iterations: int | None, scenes: list[int], overrides: list[str]) -> str:
    """``study.json`` for the study as designed, ``study_<hash>.json`` for other sizes or settings."""
    if iterations is None and scenes == [3000, 500] and not overrides:
        return "study.json"
    settings = json.dumps({"iterations": iterations, "scenes": scenes, "overrides": overrides})
    return f"study_{hashlib.sha256(settings.encode()).hexdigest()[:8]}.json"


def main(argv: list[str] | None = None) -> int:
    """Measure the rows not yet done and print one table row each; exit status 0."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    path = args.out / results_name(args.iterations, args.scenes, args.overrides)
    runs = args.runs if path.name == "study.json" else args.runs / path.stem  # other settings: other run dirs
    done = json.loads(path.read_text()) if path.exists() else {}
    for row in ROWS:
        if args.rows and not any(row.name.startswith(p) for p in args.rows):
            continue
        if row.name not in done:
            iterations = row.iterations if args.iterations is None else args.iterations
            sized = dataclasses.replace(row, iterations=iterations, overrides=[*row.overrides, *args.overrides])
            done[row.name] = measure(sized, runs, tuple(args.scenes))
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(done, indent=1))
        values = ", ".join(f"{k} {v:.3f}" for k, v in done[row.name].items())
        print(f"| {row.name} | {values} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
