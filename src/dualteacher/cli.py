"""The ``dualteacher`` command. Heavy imports happen inside each sub-command, so ``--help`` is fast."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine import train

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        config, overrides = None, [config, *overrides]
    cfg = load_config(config, overrides)
    last = Path(cfg.run_dir) / "last.safetensors"
    if last.exists() and args.no_resume:
        print(f"error: {cfg.run_dir} already holds a checkpoint ({last.name}); choose another run_dir "
              "or drop --no-resume to continue it", file=sys.stderr)
        return 2
    record = train(cfg, resume=not args.no_resume, progress=not args.quiet)
    print(json.dumps({k: v for k, v in record.items() if k.endswith("miou")}, indent=1))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .inference import load_model

    model = load_model(args.checkpoint, role=args.model, device=args.device)
    data = args.data or model.state["config"]["data"]["root"]
    metrics = model.eval_dataset(data, args.split, batch_size=args.batch_size)
    result = {"checkpoint": str(args.checkpoint), "model": model.role, "split": args.split, **metrics.as_dict(model.classes)}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{args.checkpoint} [{model.role}] on {args.split}: mIoU {metrics.miou:.4f}, "
              f"pixel accuracy {metrics.pixel_accuracy:.4f}")
        for name, iou in result["iou"].items():
            print(f"  {name:<24} {'absent' if iou is None else f'{iou:.4f}'}")
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from .data.splits import parse_labeled, write_split

    labeled, unlabeled = write_split(Path(args.data), parse_labeled(args.labeled), args.seed, source=args.source)
    print(f"wrote {labeled} and {unlabeled}")
    return 0


def _cmd_make_digits(args: argparse.Namespace) -> int:
    from .data.digits import generate_digit_scenes

    root = generate_digit_scenes(Path(args.out), num_train=args.num_train, num_val=args.num_val, size=args.size, seed=args.seed)
    print(f"wrote digit scenes to {root} (splits/train.txt, splits/val.txt)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(Path(args.out), methods=args.methods, iterations=args.iterations, seed=args.seed, progress=not args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="dualteacher", description="Semi-supervised semantic segmentation with Dual Teacher.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config (any key overridable: train.epochs=40)")
    p.add_argument("config", nargs="?", help="experiment YAML (configs/...)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. method.name=dual_teacher")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue a run directory that holds a checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="score a checkpoint on a split of a dataset")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", help="dataset root (default: the one the model was trained on)")
    p.add_argument("--split", default="val")
    p.add_argument("--model", help="which network of a training checkpoint: student (default), teacher1, ...")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("split", help="write nested labelled/unlabelled lists from splits/train.txt")
    p.add_argument("--data", required=True, help="dataset root (generic folder layout)")
    p.add_argument("--labeled", required=True, help="a count (92) or a fraction (1/16, 0.125)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", default="train", help="split to draw from (default: train)")
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("make-digits", help="write the built-in digit-scenes dataset to a folder")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--num-train", type=int, default=3000)
    p.add_argument("--num-val", type=int, default=500)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_make_digits)

    p = sub.add_parser("demo", help="the built-in comparison on digit scenes (offline)")
    p.add_argument("--out", default="runs/demo", help="output directory")
    p.add_argument("--methods", nargs="+", default=["supervised", "mean_teacher", "dual_teacher"])
    p.add_argument("--iterations", type=int, default=None, help="iterations per method (default: the demo budget)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dualteacher`` console script."""
    args = build_parser().parse_args(argv)
    from .checkpoint import CheckpointError
    from .config import ConfigError
    from .data.folder import DataError

    try:
        return args.func(args)
    except (ConfigError, DataError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
