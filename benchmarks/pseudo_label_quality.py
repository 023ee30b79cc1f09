"""How good are a run's pseudo-labels? Scores networks of a training checkpoint on labelled images
that the run treated as unlabelled (e.g. the digit scenes' unlabelled split, whose masks exist).

For each network and each ground-truth class: the share of its pixels whose confidence passes the
threshold (coverage), and how many of those confident pixels have the right argmax (accuracy);
overall: the confident share of all pixels, the share of confident pixels that are background,
and the accuracy of confident pixels. Prints a markdown table.

    python benchmarks/pseudo_label_quality.py runs/compare/<run>/last.safetensors \\
        --roles student teacher1 teacher2 --split unlabeled_1-16_seed0 --threshold 0.95
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dualteacher.config import config_from_dict
from dualteacher.data.build import eval_loader, source_from_config
from dualteacher.data.transforms import IGNORE_INDEX
from dualteacher.inference.metrics import unpadded_groups
from dualteacher.inference.model import load_model
from dualteacher.inference.modes import EvalSettings


@torch.no_grad()
def quality(checkpoint: Path, role: str, split: str, threshold: float, limit: int | None) -> dict:
    """Per-class coverage and accuracy of confident pixels, and the overall figures."""
    model = load_model(checkpoint, role)
    data = config_from_dict(model.state["config"]).data
    source = source_from_config(data)
    ids = source.split_ids(split)[:limit]
    dataset = source.dataset(ids, labeled=True, transform=EvalSettings.from_config(data).transform())
    k = len(model.classes)
    total, confident, correct = torch.zeros(k), torch.zeros(k), torch.zeros(k)
    groups = (g for batch in eval_loader(dataset, data.val_batch_size, workers=0) for g in unpadded_groups(batch))
    for batch in groups:
        probs = model.logits(batch["image"].float().div(255)).softmax(1)
        conf, pred = probs.max(1)
        mask = batch["mask"].long()
        valid = mask != IGNORE_INDEX
        sure = valid & (conf >= threshold)
        total += torch.bincount(mask[valid], minlength=k).float()
        confident += torch.bincount(mask[sure], minlength=k).float()
        correct += torch.bincount(mask[sure & (pred == mask)], minlength=k).float()
    return {
        "role": role,
        "coverage": (confident / total.clamp(min=1)).tolist(),
        "accuracy": (correct / confident.clamp(min=1)).tolist(),
        "confident_share": float(confident.sum() / total.sum()),
        "background_share_of_confident": float(confident[0] / confident.sum().clamp(min=1)),
        "confident_accuracy": float(correct.sum() / confident.sum().clamp(min=1)),
        "classes": model.classes,
        "images": len(ids),
    }


def main(argv: list[str] | None = None) -> int:
    """Score every ``--roles`` network and print the table; exit status 0."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--roles", nargs="+", default=["student"])
    parser.add_argument("--split", required=True)
    parser.add_argument("--threshold", type=float, default=0.95)
    parser.add_argument("--limit", type=int, default=None, help="score only the first N images of the split")
    args = parser.parse_args(argv)
    rows = [quality(args.checkpoint, role, args.split, args.threshold, args.limit) for role in args.roles]
    classes = rows[0]["classes"]
    print(f"{args.checkpoint} on {args.split} ({rows[0]['images']} images), threshold {args.threshold}\n")
    print(
        "| network | confident share | background share of confident | accuracy of confident | "
        + " | ".join(f"{c}: coverage / accuracy" for c in classes)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(classes))
    for r in rows:
        cells = [f"{c:.2f} / {p:.2f}" for c, p in zip(r["coverage"], r["accuracy"])]
        print(
            f"| {r['role']} | {r['confident_share']:.3f} | {r['background_share_of_confident']:.3f} | "
            f"{r['confident_accuracy']:.3f} | " + " | ".join(cells) + " |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
