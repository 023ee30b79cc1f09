"""The ``dualteacher`` command. Heavy imports happen inside each sub-command, so ``--help`` is fast."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


def _cmd_train(args: argparse.Namespace) -> int:
    from dualteacher.config import load_config
    from dualteacher.training.loop import train

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        config, overrides = None, [config, *overrides]
    flags = {"data.dataset": args.dataset, "data.root": args.data, "data.splits_dir": args.splits_dir}
    overrides += [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    cfg = load_config(config, overrides)
    run_dir = Path(cfg.run_dir)
    existing = sorted(run_dir.glob("last*.safetensors")) + sorted(run_dir.glob(".next.safetensors"))
    if existing and args.no_resume:
        print(f"error: {cfg.run_dir} already holds a checkpoint ({existing[0].name}); choose another run_dir "
              "or drop --no-resume to continue it", file=sys.stderr)
        return 2
    if args.resume and not existing:
        print(f"error: --resume: {cfg.run_dir} holds no training checkpoint (last*.safetensors)", file=sys.stderr)
        return 2
    record = train(cfg, resume=not args.no_resume, allow_changes=args.resume_with_changes, progress=not args.quiet)
    print(json.dumps({k: v for k, v in record.items() if k.endswith("miou") or k == "interrupted"}, indent=1))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from dualteacher.inference.model import load_model

    model = load_model(args.checkpoint, role=args.model, device=args.device)
    try:
        settings = model.protocol.override(
            mode=args.mode, tile=args.tile, stride=args.stride, flip=args.flip, scales=args.scales, resize=args.resize
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    split = args.split or model.default_split(args.dataset, args.data)
    metrics = model.eval_dataset(
        args.data, split, dataset=args.dataset, splits_dir=args.splits_dir, settings=settings,
        batch_size=args.batch_size, workers=args.workers, ignore_index=args.ignore_index,
    )
    dataset = args.dataset or model.state["config"]["data"]["dataset"]
    result = {
        "checkpoint": str(args.checkpoint), "model": model.role, "dataset": dataset, "split": split,
        "mode": settings.mode, **metrics.as_dict(model.classes),
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{args.checkpoint} [{model.role}] on {dataset} {split} ({settings.mode}): mIoU {metrics.miou:.4f}, "
              f"pixel accuracy {metrics.pixel_accuracy:.4f}")
        for name, iou in result["iou"].items():
            print(f"  {name:<24} {'absent' if iou is None else f'{iou:.4f}'}")
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from dualteacher.data.registry import open_source
    from dualteacher.data.split_files import import_split, split_source

    source = open_source(args.dataset, args.data, args.splits_dir)
    if args.import_labeled is not None:
        if not args.name:
            print("error: --import needs --name (the lists become labeled_<name>.txt and unlabeled_<name>.txt)",
                  file=sys.stderr)
            return 2
        labeled, unlabeled = import_split(
            source, args.import_labeled, args.name, unlabeled_file=args.import_unlabeled, pool=args.source
        )
    else:
        if args.import_unlabeled is not None:
            print("error: --import-unlabeled goes with --import", file=sys.stderr)
            return 2
        labeled, unlabeled = split_source(source, args.labeled, args.seed, pool=args.source, name=args.name)
    print(f"wrote {labeled} and {unlabeled}")
    return 0


def _cmd_check_data(args: argparse.Namespace) -> int:
    from dualteacher.config import load_config
    from dualteacher.data import check

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        config, overrides = None, [config, *overrides]
    flags = {
        "data.dataset": args.dataset, "data.root": args.data, "data.splits_dir": args.splits_dir,
        "data.labeled_split": args.labeled_split, "data.unlabeled_split": args.unlabeled_split,
        "data.val_split": args.val_split,
    }
    overrides += [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    cfg = load_config(config, overrides)
    splits = check.training_splits(cfg, unlabeled=True if args.unlabeled_split is not None else None)
    report = check.check_config(
        cfg, splits, full=args.full, workers=cfg.data.workers if args.workers is None else args.workers,
        progress=not args.quiet and sys.stderr.isatty(), cache_dir=None if args.no_cache else check.default_cache_dir(),
    )
    print(report.to_json() if args.json else report.format(limit=args.limit))
    return 1 if report.errors else 0


def _cmd_make_digits(args: argparse.Namespace) -> int:
    from dualteacher.data.digits import DEFAULT_SIZE, generate_digit_scenes

    root = generate_digit_scenes(Path(args.out), num_train=args.num_train, num_val=args.num_val,
                                 size=args.size or DEFAULT_SIZE, seed=args.seed)
    print(f"wrote digit scenes to {root} (splits/train.txt, splits/val.txt)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dualteacher.experiments.demo import run_demo

    rows = run_demo(Path(args.out), methods=args.methods, iterations=args.iterations, warmup=args.warmup,
                    seed=args.seed, progress=not args.quiet, upper_bound=not args.no_upper_bound)
    return 0 if rows is not None else 130


def _cmd_compare(args: argparse.Namespace) -> int:
    from dualteacher.experiments.compare import CompareOptions, compare

    names = ("data", "out", "dataset", "splits_dir", "methods", "variants", "seeds", "iterations", "minutes",
             "upper_bound", "jobs", "runs", "overrides", "report_only", "warmup")
    given = {k: getattr(args, k) for k in names if not (k == "warmup" and args.warmup is None)}
    options = CompareOptions(fractions=args.labeled, budgets=args.budget, **given)
    return 1 if compare(options).failed else 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from dualteacher.inference.model import load_model
    from dualteacher.inference.predict import predict_files, safe_name

    model = load_model(args.checkpoint, role=args.model, device=args.device)
    try:
        settings = model.prediction_settings(
            args.mode, args.tile, args.stride, flip=args.flip, scales=args.scales, resize=args.resize
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    records = predict_files(
        model, args.inputs, args.out, batch_size=args.batch_size, settings=settings,
        overlay=args.overlay, probs=args.probs, progress=not args.quiet,
    )
    renamed = [r for r in records if Path(r["mask"]).stem != safe_name(Path(r["input"]).stem)]
    for r in renamed:
        print(f"note: {r['input']} shares its name with another input; wrote {r['mask']}", file=sys.stderr)
    print(f"wrote {len(records)} class map(s) to {args.out} (listed in predictions.json)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import time

    from dualteacher.inference.export import check_onnx, export_onnx
    from dualteacher.inference.model import load_model

    model = load_model(args.checkpoint, role=args.model)
    start = time.perf_counter()
    card = export_onnx(model, args.onnx)
    print(f"wrote {args.onnx} and {card} in {time.perf_counter() - start:.1f} s")
    if not args.no_check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            print("error: checking the export needs onnxruntime (pip install 'dualteacher[export]'); "
                  "pass --no-check to skip it", file=sys.stderr)
            return 2
        side = model.tile + model.stride // 2 + 1
        result = check_onnx(model, args.onnx, [(2, model.tile, model.tile), (1, side, side + 7)])
        print(f"onnxruntime vs PyTorch: max |logit difference| {result['max_abs_diff']:.2e}, "
              f"argmax mismatch {result['argmax_mismatch']:.2%}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from dualteacher.inference.hub import push

    if args.private and args.local_dir is not None:
        print("error: --private sets the visibility of an uploaded repository; with --local-dir nothing is "
              "uploaded", file=sys.stderr)
        return 2
    pushed = push(args.source, args.repo_id, local_dir=args.local_dir, role=args.model, private=args.private)
    metrics = pushed.config["metrics"]
    score = f", val mIoU {metrics['miou']:.4f}" if metrics else ", no val evaluation recorded"
    done = "wrote model.safetensors, config.json and README.md to" if args.local_dir is not None else "uploaded to"
    print(f"{pushed.checkpoint} [{pushed.config['role']}{score}]: {done} {pushed.where}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from dualteacher.experiments.plots import report_figure

    run_dir = Path(args.run_dir)
    if not (run_dir / "metrics.jsonl").is_file():
        print(f"error: {run_dir} holds no metrics.jsonl (is it a run directory?)", file=sys.stderr)
        return 2
    path = report_figure(run_dir, args.out or run_dir / "report.png")
    print(f"wrote {path}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {value}")
    return value


def _data_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--dataset``, ``--data`` and ``--splits-dir``, shared by the data-reading commands."""
    from dualteacher.registry import DATASETS

    parser.add_argument("--dataset", choices=tuple(DATASETS),
                        default="folder" if required else None,
                        help="dataset layout (default: " + ("folder)" if required else "the config's data.dataset)"))
    parser.add_argument("--data", required=required,
                        help="dataset root: the folder layout's root, VOCdevkit/VOC2012, the Cityscapes root or "
                             "ADEChallengeData2016" + ("" if required else " (default: the config's data.root)"))
    parser.add_argument("--splits-dir", help="where split lists live (default: ROOT/splits for folder, "
                                             "./splits/<dataset> for the benchmarks)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from dualteacher.experiments.budgets import BUDGETS
    from dualteacher.registry import EVAL_MODES, METHODS

    parser = argparse.ArgumentParser(prog="dualteacher", description="Semi-supervised semantic segmentation with Dual Teacher.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config (any key overridable: train.epochs=40)")
    p.add_argument("config", nargs="?", help="experiment YAML (configs/...)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. method.name=dual_teacher")
    p.add_argument("--resume", action="store_true",
                   help="require a checkpoint in run_dir to continue from (a run dir with one is resumed anyway)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue a run directory that holds a checkpoint")
    p.add_argument("--resume-with-changes", action="store_true",
                   help="continue a checkpoint whose settings differ, if every change is safe (more epochs, cadence, "
                        "device, ...); without it any difference is listed and refused")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _data_options(p, required=False)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="score a checkpoint on a split of a dataset")
    p.add_argument("checkpoint", type=Path)
    _data_options(p, required=False)
    p.add_argument("--split", help="default: the run's data.val_split on its own data, else val")
    p.add_argument("--model", help="which network of a training checkpoint: student (default), teacher1, ...")
    p.add_argument("--mode", choices=tuple(EVAL_MODES),
                   help="whole image, centre crop (image and label) or sliding window (default: data.eval_mode)")
    p.add_argument("--tile", type=_positive, help="centre-crop / window size (default: data.eval_tile or crop_size)")
    p.add_argument("--stride", type=_positive, help="slide: step between windows (default: 2/3 of the tile)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the horizontally flipped image (default: data.eval_flip)")
    p.add_argument("--scales", type=float, nargs="+", help="multi-scale test: e.g. 0.75 1 1.25 (default: data.eval_scales)")
    p.add_argument("--resize", type=_positive, nargs=2, metavar=("LONG", "SHORT"),
                   help="keep-ratio resize before prediction, e.g. 2048 512 (default: data.eval_resize)")
    p.add_argument("--batch-size", type=_positive, help="default: data.val_batch_size of the checkpoint")
    p.add_argument("--ignore-index", type=int, metavar="VALUE",
                   help="folder layout: mask value of unlabelled pixels (default: the run's data.ignore_index)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("split", help="write nested labelled/unlabelled lists, or import public split files")
    _data_options(p, required=True)
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--labeled", help="a count (92) or a fraction (1/16, 0.125) of the source split, or 'masked': "
                                          "its images that have a mask file (the others unlabelled)")
    budget.add_argument("--import", dest="import_labeled", type=Path, metavar="FILE",
                        help="a labelled list to import (UniMatch/U2PL 'image mask' lines, or ids / file names)")
    p.add_argument("--import-unlabeled", type=Path, metavar="FILE", help="its unlabelled list (default: the rest of the pool)")
    p.add_argument("--name", help="list names: labeled_<name>.txt (default for --labeled: <budget>_seed<seed>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--source", default="train", help="split to draw the labelled images from (default: train)")
    p.set_defaults(func=_cmd_split)

    p = sub.add_parser("check-data", help="list every problem of a dataset's files, masks and splits (exit 1: errors)")
    p.add_argument("config", nargs="?", help="experiment YAML whose data section (and method) name the splits")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.val_split=val")
    _data_options(p, required=False)
    p.add_argument("--labeled-split", help="labelled split (default: the config's data.labeled_split)")
    p.add_argument("--unlabeled-split", help="unlabelled split; checked when given or when the method uses one")
    p.add_argument("--val-split", help="val split (default: the config's data.val_split)")
    p.add_argument("--full", action="store_true",
                   help="also decode every image (masks are always decoded; slower)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--workers", type=int,
                   help="processes reading files (default: data.workers, as train; 0: in this process)")
    p.add_argument("--no-cache", action="store_true",
                   help="read every file, neither using nor updating the cache of files checked before")
    p.add_argument("--limit", type=_positive, default=10, help="findings printed per kind (default: 10)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_check_data)

    p = sub.add_parser("make-digits", help="write the built-in digit-scenes dataset to a folder")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--num-train", type=int, default=3000)
    p.add_argument("--num-val", type=int, default=500)
    p.add_argument("--size", type=int, default=None, help="scene side in pixels (default: the benchmark's)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_make_digits)

    p = sub.add_parser("demo", help="the built-in comparison on digit scenes (offline)")
    p.add_argument("--out", default="runs/demo",
                   help="output directory (default: runs/demo; finished runs in it are reused)")
    p.add_argument("--methods", nargs="+", choices=tuple(METHODS),
                   help="methods to train (default: supervised, Mean Teacher and Dual Teacher)")
    p.add_argument("--iterations", type=_positive, default=None,
                   help="iterations of each method after the warm-up (default: 200)")
    p.add_argument("--warmup", type=_non_negative, default=None,
                   help="supervised iterations every method starts from (default: 300; 0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the labelled split and of training (default: 0)")
    p.add_argument("--no-upper-bound", action="store_true", help="skip supervised training on every train scene")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("compare", help="does semi-supervised training help on my data? every method with one recipe")
    _data_options(p, required=True)
    p.add_argument("--labeled", nargs="+", required=True,
                   help="label budgets: fractions (1/16 1/8) or counts (50) of the train split, or 'masked': the "
                        "train images that have a mask file, the others unlabelled (your own partly labelled data)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), help=f"methods to run (default: {' '.join(METHODS)})")
    p.add_argument("--variants", nargs="+", default=[], help="extra variants, e.g. dual_teacher_persistent")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds, each its own labelled split and training run (default: 0 1 2)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--iterations", type=_positive,
                        help="iterations per run after the warm-up (default: the recipe's 1000 less the warm-up)")
    length.add_argument("--minutes", type=float,
                        help="iterations after the warm-up such that Dual Teacher trains about this long")
    p.add_argument("--budget", nargs="+", default=["iterations"], choices=BUDGETS,
                   help="time: every method also gets Dual Teacher's training time")
    p.add_argument("--upper-bound", action="store_true", help="also supervised with every train image labelled")
    p.add_argument("--warmup", type=_non_negative, default=None,
                   help="supervised iterations on each labelled split that every method starts from (counted in "
                        "every time; default: the recipe's 300; 0: none, every run from the encoder)")
    p.add_argument("--jobs", type=_positive, default=1, help="runs at a time (the CPU threads are shared out)")
    p.add_argument("--out", required=True, type=Path, help="summary.json, table.md, figures, summaries/")
    p.add_argument("--runs", type=Path, help="run directories (default: OUT/runs)")
    p.add_argument("--report-only", action="store_true", help="train nothing: tabulate the finished runs")
    p.add_argument("overrides", nargs="*", help="key=value settings for every run, e.g. train.amp=off")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("predict", help="class maps (palette PNGs) for images, folders or globs")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("inputs", nargs="+", help="image files, folders (not recursive) or quoted globs ('data/**/*.jpg')")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--model", help="which network of a training checkpoint: student (default), teacher1, ...")
    p.add_argument("--mode", choices=tuple(EVAL_MODES),
                   help="whole image at once or overlapping tiles (default: the run's data.eval_mode); center "
                        "predicts whole images")
    p.add_argument("--tile", type=_positive, help="slide: tile size (default: data.eval_tile or crop_size)")
    p.add_argument("--stride", type=_positive,
                   help="slide: step between tiles (default: data.eval_stride, else 2/3 of the tile)")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="average with the horizontally flipped image (default: data.eval_flip)")
    p.add_argument("--scales", type=float, nargs="+", help="multi-scale: e.g. 0.75 1 1.25 (default: data.eval_scales)")
    p.add_argument("--resize", type=_positive, nargs=2, metavar=("LONG", "SHORT"),
                   help="keep-ratio resize before prediction, e.g. 2048 512 (default: data.eval_resize)")
    p.add_argument("--batch-size", type=_positive, default=4)
    p.add_argument("--overlay", action="store_true", help="also write overlays/<name>.png (image + class colours)")
    p.add_argument("--probs", action="store_true", help="also write probs/<name>.npy (float16 [C,H,W] probabilities)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export", help="export a checkpoint's network to ONNX (needs the 'export' extra)")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--onnx", required=True, type=Path, help="output .onnx file (a .json with classes goes next to it)")
    p.add_argument("--model", help="which network of a training checkpoint: student (default), teacher1, ...")
    p.add_argument("--no-check", action="store_true", help="skip comparing onnxruntime's output with PyTorch's")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("push", help="share a trained model in the Hugging Face hub layout (needs the 'hub' extra)")
    p.add_argument("source", type=Path, help="run directory (its best.safetensors) or checkpoint file")
    p.add_argument("--repo-id", required=True, metavar="ORG/NAME",
                   help="hub repository, also named in the model card and its eval command")
    p.add_argument("--local-dir", type=Path, metavar="DIR",
                   help="write model.safetensors, config.json and README.md here instead of uploading")
    p.add_argument("--model", help="which network: student, teacher1, ... (default: the one best.safetensors "
                                   "holds; a run directory's last.safetensors for another)")
    p.add_argument("--private", action="store_true", help="create the hub repository private (upload only)")
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser("report", help="plot a run's curves (losses, LR, mIoU, coupling) into one PNG")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", type=Path, help="output PNG (default: RUN_DIR/report.png)")
    p.set_defaults(func=_cmd_report)
    return parser


def sub_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of each sub-command of ``parser``, by name."""
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.\w+)+=")
"""A ``key=value`` override (dotted key) among a command's words."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a command line in which options may come before, between or after a sub-command's
    positional arguments (``train configs/x.yaml --quiet train.epochs=1``). Unknown options, help
    and a missing or unknown sub-command exit with argparse's message (status 2)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = sub_commands(parser)
    if not argv or argv[0] not in commands:
        return parser.parse_args(argv)
    command = commands[argv[0]]
    words = argv[1:]
    takes_overrides = any(action.dest == "overrides" for action in command._actions)
    pulled = [w for w in words if OVERRIDE.match(w)] if takes_overrides else []
    args = command.parse_intermixed_args([w for w in words if w not in pulled] if pulled else words)
    if pulled:  # taken out first, so that a list option (--labeled 1/16 ...) cannot swallow them
        args.overrides = [*args.overrides, *pulled]
    args.command = argv[0]
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dualteacher`` console script."""
    args = parse_args(argv)
    from dualteacher.checkpoint import CheckpointError
    from dualteacher.config import ConfigError
    from dualteacher.data.core import DataError

    try:
        return args.func(args)
    except (ConfigError, DataError, CheckpointError, FloatingPointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
