"""The ``dualteacher`` command. Heavy imports happen inside each sub-command, so ``--help`` is fast,
and after the settings are checked, so a mistyped setting is reported before PyTorch is imported
(except a setting of the method section, which is read into the method's own settings class)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dualteacher.registry import did_you_mean

if TYPE_CHECKING:
    import torch

    from dualteacher.config import Config


def _cmd_train(args: argparse.Namespace) -> int:
    from dualteacher.config import config_yaml, load_config

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        config, overrides = None, [config, *overrides]
    fitted_only = {"--iterations": args.iterations, "--minutes": args.minutes, "--warmup": args.warmup}
    given = [name for name, value in fitted_only.items() if value is not None]
    if args.method is None and given:
        print(
            f"error: {given[0]} goes with --data ROOT --method NAME (the built-in recipe); with a config set "
            "train.epochs / train.iters_per_epoch",
            file=sys.stderr,
        )
        return 2
    if args.method is not None and config is not None:
        print(
            f"error: --method trains the built-in recipe without a config; with {config} set "
            f"method.name={args.method} instead",
            file=sys.stderr,
        )
        return 2
    if config is None and args.data is not None and args.method is None:
        from dualteacher.registry import METHODS

        print(
            f"error: --data without a config trains the built-in recipe fitted to the data: name the method, e.g. "
            f"run: dualteacher train --data {args.data} --method mean_teacher (one of {', '.join(METHODS)})",
            file=sys.stderr,
        )
        return 2
    if args.device is not None:
        overrides.append(f"train.device={json.dumps(args.device)}")
    plan = None
    if args.method is not None:
        if args.data is None:
            print(
                f"error: --method needs --data ROOT, e.g. run: dualteacher train --data ROOT --method {args.method}",
                file=sys.stderr,
            )
            return 2
        if args.print_config and args.minutes is not None:
            print(
                "error: --print-config trains nothing, but --minutes times a probe of training to choose the "
                "length: give --iterations N instead",
                file=sys.stderr,
            )
            return 2
        from dualteacher.experiments.fitted import plan_fitted

        plan = plan_fitted(
            args.data,
            args.method,
            dataset=args.dataset or "folder",
            splits_dir=args.splits_dir,
            iterations=args.iterations,
            minutes=args.minutes,
            warmup=args.warmup,
            overrides=overrides,
        )
        if args.print_config:
            print(_fitted_yaml(plan.config, plan.warmup, plan.account), end="")
            return 0
        cfg = plan.config
    else:
        flags = {"data.dataset": args.dataset, "data.root": args.data, "data.splits_dir": args.splits_dir}
        overrides += [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
        cfg = load_config(config, overrides)
        if args.print_config:
            print(config_yaml(cfg), end="")
            return 0
    from dualteacher.training.loop import train

    run_dir = Path(cfg.run_dir)
    existing = sorted(run_dir.glob("last*.safetensors")) + sorted(run_dir.glob(".next.safetensors"))
    if existing and args.no_resume:
        print(
            f"error: {cfg.run_dir} already holds a checkpoint ({existing[0].name}); choose another run_dir "
            "or drop --no-resume to continue it",
            file=sys.stderr,
        )
        return 2
    if args.resume and not existing:
        print(f"error: --resume: {cfg.run_dir} holds no training checkpoint (last*.safetensors)", file=sys.stderr)
        return 2
    if plan is not None:
        from dualteacher.experiments.fitted import train_fitted

        trained, record = train_fitted(
            plan, resume=not args.no_resume, allow_changes=args.resume_with_changes, progress=not args.quiet
        )
        if trained is plan.warmup:
            print(
                f"the warm-up was interrupted; its checkpoint is kept in {trained.run_dir}: run the same command "
                "again to continue",
                file=sys.stderr,
            )
            return 130
    else:
        record = train(cfg, resume=not args.no_resume, allow_changes=args.resume_with_changes, progress=not args.quiet)
    print(json.dumps({k: v for k, v in record.items() if k.endswith("miou") or k == "interrupted"}, indent=1))
    best = run_dir / "best.safetensors"
    if best.is_file():
        print(f"best network: {best}")
    return 0


def _fitted_yaml(cfg: Config, warmup: Config | None, account: list[str]) -> str:
    """``train --data ROOT --method M --print-config``: the recipe's choices as comments, then the
    warm-up's settings (if any) and the run's, as YAML documents in the order they train."""
    from dualteacher.config import config_yaml

    lines = [
        "# dualteacher train --data --method: the built-in recipe fitted to the data",
        *(f"# {a}" for a in account),
    ]
    if warmup is not None:
        lines += [
            f"# 1. the supervised warm-up, trained first in {warmup.run_dir}:",
            config_yaml(warmup).rstrip(),
            "---",
            f"# 2. {cfg.method.name}, starting from the warm-up's student:",
        ]
    return "\n".join([*lines, config_yaml(cfg)])


def _device(name: str) -> torch.device:
    """The torch device of a ``--device`` option (``auto``: CUDA when available, else CPU)."""
    from dualteacher.training.loop import resolve_device

    return resolve_device(name)


def _cmd_eval(args: argparse.Namespace) -> int:
    from dualteacher.environment import describe
    from dualteacher.inference.model import load_model

    model = load_model(args.checkpoint, role=args.model, device=_device(args.device))
    try:
        settings = model.protocol.override(
            mode=args.mode,
            tile=args.tile,
            stride=args.stride,
            flip=args.flip,
            scales=args.scales,
            resize=args.resize,
            window_batch=args.window_batch,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    split = args.split or model.default_split(args.dataset, args.data)
    metrics = model.eval_dataset(
        args.data,
        split,
        dataset=args.dataset,
        splits_dir=args.splits_dir,
        settings=settings,
        batch_size=args.batch_size,
        workers=args.workers,
        ignore_index=args.ignore_index,
    )
    dataset = args.dataset or model.state["config"]["data"]["dataset"]
    result = {
        "checkpoint": str(args.checkpoint),
        "model": model.role,
        "dataset": dataset,
        "split": split,
        "mode": settings.mode,
        **metrics.as_dict(model.classes),
        "environments": model.state.get("environments", []),
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(
            f"{args.checkpoint} [{model.role}] on {dataset} {split} ({settings.mode}): mIoU {metrics.miou:.4f}, "
            f"pixel accuracy {metrics.pixel_accuracy:.4f}"
        )
        for name, iou in result["iou"].items():
            print(f"  {name:<24} {'absent' if iou is None else f'{iou:.4f}'}")
        print("trained in:\n" + "\n".join(describe(result["environments"])))
    return 0


def _cmd_split(args: argparse.Namespace) -> int:
    from dualteacher.data.registry import open_source
    from dualteacher.data.split_files import import_split, split_source

    source = open_source(args.dataset, args.data, args.splits_dir)
    if args.import_labeled is not None:
        if not args.name:
            print(
                "error: --import needs --name (the lists become labeled_<name>.txt and unlabeled_<name>.txt)",
                file=sys.stderr,
            )
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


def _cmd_init(args: argparse.Namespace) -> int:
    from dualteacher.data.prepare import prepare_folder

    report = prepare_folder(
        args.data, classes=args.classes, val=args.val, seed=args.seed, force=args.force, indexed_copy=args.indexed_copy
    )
    print(report.format())
    return 0


def _own_splits(args: argparse.Namespace, overrides: list[str]) -> dict[str, str]:
    """For ``check-data --data ROOT`` without a config: the lists ``init`` wrote (labeled_masked and
    unlabeled_masked, or train), unless the folder has the library's default ``labeled`` list or
    the splits are set by overrides or another dataset is named."""
    from dualteacher.data.prepare import own_splits
    from dualteacher.data.registry import open_source
    from dualteacher.experiments.recipe import override_keys

    if (args.dataset or "folder") != "folder" or override_keys(overrides) & {"data.labeled_split", "data.splits_dir"}:
        return {}
    source = open_source("folder", args.data, args.splits_dir)
    if source.split_file("labeled").is_file():
        return {}
    labeled, unlabeled, _ = own_splits(source, args.data, unlabeled=False)
    return {"data.labeled_split": labeled, **({"data.unlabeled_split": unlabeled} if unlabeled != labeled else {})}


def _cmd_check_data(args: argparse.Namespace) -> int:
    from dualteacher.config import load_config

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        config, overrides = None, [config, *overrides]
    flags = {
        "data.dataset": args.dataset,
        "data.root": args.data,
        "data.splits_dir": args.splits_dir,
        "data.labeled_split": args.labeled_split,
        "data.unlabeled_split": args.unlabeled_split,
        "data.val_split": args.val_split,
    }
    own = _own_splits(args, overrides) if config is None and args.data and args.labeled_split is None else {}
    flags.update(own)
    overrides += [f"{key}={json.dumps(value)}" for key, value in flags.items() if value is not None]
    cfg = load_config(config, overrides)
    from dualteacher.data import check

    unlabeled = args.unlabeled_split is not None or "data.unlabeled_split" in own
    splits = check.training_splits(cfg, unlabeled=True if unlabeled else None)
    report = check.check_config(
        cfg,
        splits,
        full=args.full,
        workers=cfg.data.workers if args.workers is None else args.workers,
        progress=not args.quiet and sys.stderr.isatty(),
        cache_dir=None if args.no_cache else check.default_cache_dir(),
    )
    print(report.to_json() if args.json else report.format(limit=args.limit))
    return 1 if report.errors else 0


def _cmd_make_digits(args: argparse.Namespace) -> int:
    from dualteacher.data.digits import DEFAULT_SIZE, generate_digit_scenes

    root = generate_digit_scenes(
        Path(args.out), num_train=args.num_train, num_val=args.num_val, size=args.size or DEFAULT_SIZE, seed=args.seed
    )
    print(f"wrote digit scenes to {root} (splits/train.txt, splits/val.txt)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dualteacher.experiments.demo import run_demo

    rows = run_demo(
        Path(args.out),
        methods=args.methods,
        iterations=args.iterations,
        warmup=args.warmup,
        seed=args.seed,
        progress=not args.quiet,
        upper_bound=not args.no_upper_bound,
    )
    return 0 if rows is not None else 130


def _cmd_compare(args: argparse.Namespace) -> int:
    from dualteacher.experiments.compare import CompareOptions, compare

    names = (
        "data",
        "out",
        "dataset",
        "splits_dir",
        "methods",
        "variants",
        "seeds",
        "iterations",
        "minutes",
        "upper_bound",
        "jobs",
        "runs",
        "overrides",
        "report_only",
        "warmup",
    )
    given = {k: getattr(args, k) for k in names if not (k == "warmup" and args.warmup is None)}
    options = CompareOptions(fractions=args.labeled, budgets=args.budget, **given)
    return 1 if compare(options).failed else 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from dualteacher.inference.model import load_model
    from dualteacher.inference.predict import predict_files, safe_name

    model = load_model(args.checkpoint, role=args.model, device=_device(args.device))
    try:
        settings = model.prediction_settings(
            args.mode,
            args.tile,
            args.stride,
            flip=args.flip,
            scales=args.scales,
            resize=args.resize,
            window_batch=args.window_batch,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    records = predict_files(
        model,
        args.inputs,
        args.out,
        batch_size=args.batch_size,
        settings=settings,
        overlay=args.overlay,
        probs=args.probs,
        progress=not args.quiet,
    )
    renamed = [r for r in records if Path(r["mask"]).stem != safe_name(Path(r["input"]).stem)]
    for r in renamed:
        print(f"note: {r['input']} shares its name with another input; wrote {r['mask']}", file=sys.stderr)
    print(f"wrote {len(records)} class map(s) to {args.out} (listed in predictions.json)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import time

    from dualteacher.extras import MissingExtraError, require
    from dualteacher.inference.export import CHECK_PURPOSE, check_onnx, export_onnx
    from dualteacher.inference.model import load_model

    if not args.no_check:
        try:
            require("onnxruntime", extra="export", purpose=CHECK_PURPOSE)
        except MissingExtraError as error:
            print(f"error: {error}; or pass --no-check to skip the check", file=sys.stderr)
            return 2
    model = load_model(args.checkpoint, role=args.model)
    start = time.perf_counter()
    exported = export_onnx(model, args.onnx, dynamo=not args.torchscript)
    if exported.fallback_reason is not None:
        print(
            f"note: the dynamo exporter failed, fell back to the TorchScript exporter: {exported.fallback_reason}",
            file=sys.stderr,
        )
    print(
        f"wrote {exported.onnx} and {exported.card} with the {exported.exporter} exporter "
        f"in {time.perf_counter() - start:.1f} s"
    )
    if not args.no_check:
        side = model.tile + model.stride // 2 + 1
        result = check_onnx(model, args.onnx, [(2, model.tile, model.tile), (1, side, side + 7)])
        print(
            f"onnxruntime vs PyTorch: max |logit difference| {result['max_abs_diff']:.2e}, "
            f"argmax mismatch {result['argmax_mismatch']:.2%}"
        )
        if not result["argmax_mismatch"] <= 0.001:
            hint = "; export with --torchscript" if exported.exporter == "dynamo" else ""
            print(f"error: {args.onnx} disagrees with PyTorch on more than 0.1% of pixels{hint}", file=sys.stderr)
            return 1
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from dualteacher.inference.hub import push

    if args.private and args.local_dir is not None:
        print(
            "error: --private sets the visibility of an uploaded repository; with --local-dir nothing is uploaded",
            file=sys.stderr,
        )
        return 2
    pushed = push(args.source, args.repo_id, local_dir=args.local_dir, role=args.model, private=args.private)
    metrics = pushed.config["metrics"]
    score = f", val mIoU {metrics['miou']:.4f}" if metrics else ", no val evaluation recorded"
    done = "wrote model.safetensors, config.json and README.md to" if args.local_dir is not None else "uploaded to"
    print(f"{pushed.checkpoint} [{pushed.config['role']}{score}]: {done} {pushed.where}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from dualteacher.environment import describe, read_environments
    from dualteacher.experiments.plots import report_figure

    run_dir = Path(args.run_dir)
    if not (run_dir / "metrics.jsonl").is_file():
        print(f"error: {run_dir} holds no metrics.jsonl (is it a run directory?)", file=sys.stderr)
        return 2
    path = report_figure(run_dir, args.out or run_dir / "report.png")
    print(f"wrote {path}")
    print("\n".join(describe(read_environments(run_dir))))
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, e.g. 0.2, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {value}")
    return value


def _data_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--dataset``, ``--data`` and ``--splits-dir``, shared by the data-reading commands."""
    from dualteacher.registry import DATASETS

    parser.add_argument(
        "--dataset",
        choices=tuple(DATASETS),
        default="folder" if required else None,
        help="dataset layout" + ("" if required else " (default: the config's data.dataset)"),
    )
    parser.add_argument(
        "--data",
        required=required,
        help="dataset root: the folder layout's root, VOCdevkit/VOC2012, the Cityscapes root or "
        "ADEChallengeData2016" + ("" if required else " (default: the config's data.root)"),
    )
    parser.add_argument(
        "--splits-dir",
        help="where split lists live (default: ROOT/splits for folder, ./splits/<dataset> for the benchmarks)",
    )


DEVICE_HELP = "auto: CUDA when available (the local rank's GPU under torchrun), else CPU; or cpu, cuda, cuda:1, mps"
"""What every ``--device`` option (and ``train.device``) takes; ``auto`` is the default everywhere."""


def _checkpoint_argument(parser: argparse.ArgumentParser) -> None:
    """The ``checkpoint`` positional of ``eval`` and ``predict``."""
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="a checkpoint file, a run directory's best.safetensors, or a folder written by 'dualteacher push'",
    )


def _test_time_options(parser: argparse.ArgumentParser) -> None:
    """``--flip``, ``--scales``, ``--resize`` and ``--window-batch`` of ``eval`` and ``predict``;
    each defaults to the checkpoint's ``data.eval_*`` setting."""
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average with the horizontally flipped image (default: data.eval_flip)",
    )
    parser.add_argument(
        "--scales", type=float, nargs="+", help="multi-scale test: e.g. 0.75 1 1.25 (default: data.eval_scales)"
    )
    parser.add_argument(
        "--resize",
        type=_positive,
        nargs=2,
        metavar=("LONG", "SHORT"),
        help="keep-ratio resize before prediction, e.g. 2048 512 (default: data.eval_resize)",
    )
    parser.add_argument(
        "--window-batch",
        type=_positive,
        help="slide: windows per forward pass; speed and memory only (default: data.eval_window_batch)",
    )


def _device_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--device`` (default ``auto``) of a command that runs a network."""
    parser.add_argument("--device", default="auto", help=f"where {what}: {DEVICE_HELP}")


VERSION_DISTRIBUTIONS = ("torch", "torchvision", "segmentation-models-pytorch", "timm")
"""The libraries whose versions ``dualteacher --version`` prints after its own."""

NO_COMMAND_STATUS = 2
"""Exit status of ``dualteacher`` without a command (the help is printed): a usage error, as for
an unknown command."""


def version_report() -> str:
    """What ``dualteacher --version`` prints: one ``name version`` line each for dualteacher (and
    the folder it is imported from), the libraries of :data:`VERSION_DISTRIBUTIONS` ("not
    installed" if missing; torch with its CUDA build), Python, and the devices PyTorch sees
    ("cuda: N × name, ..." / "mps" / "cpu only"). Imports torch, so only ``--version`` calls it."""
    from collections import Counter
    from importlib.metadata import PackageNotFoundError, version

    from dualteacher import __version__

    lines = [f"dualteacher {__version__} ({Path(__file__).resolve().parent})"]
    for name in VERSION_DISTRIBUTIONS:
        try:
            lines.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            lines.append(f"{name} not installed")
    lines.append(f"Python {sys.version.split()[0]} ({sys.executable})")
    try:
        import torch
    except ImportError:
        return "\n".join([*lines, "devices: unknown (torch is not installed)"])
    build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
    lines[1] = f"{lines[1]} ({build})"
    if torch.cuda.is_available():
        names = Counter(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        devices = "cuda: " + ", ".join(f"{count} × {name}" for name, count in sorted(names.items()))
    elif torch.backends.mps.is_available():
        devices = "mps"
    else:
        devices = "cpu only"
    return "\n".join([*lines, f"devices: {devices}"])


class _VersionAction(argparse.Action):
    """``--version``: print :func:`version_report` and exit 0 (computed only when asked for)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="print the versions of dualteacher, PyTorch and the libraries it builds on, "
            "Python and the devices seen, then exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(version_report())
        parser.exit()


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that keeps the description and the examples as written and ends every option whose
    default is a value (not None, False or suppressed) with ``(default: VALUE)``, unless its help
    already says what its default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or "default" in text
            or default is None
            or default is False
            or default == argparse.SUPPRESS
        ):
            return text
        shown = (" ".join(map(str, default)) or "none") if isinstance(default, (list, tuple)) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".lstrip()


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose error for a value outside an option's choices (or an unknown
    sub-command) suggests the nearest choice, as Python 3.14's ``suggest_on_error`` does."""

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as err:
            hint = did_you_mean(str(value), map(str, action.choices or ())) if isinstance(value, str) else ""
            if not hint:
                raise
            raise argparse.ArgumentError(action, f"{err.message}; {hint}") from None


EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "train": [
        (
            "your folder (prepared by 'dualteacher init') with the built-in recipe, each choice printed",
            "dualteacher train --data ~/my_data --method mean_teacher --iterations 2000",
        ),
        (
            "a shipped config (dualteacher/configs/NAME.yaml) with settings overridden",
            "dualteacher train voc_classic_r101 data.root=VOCdevkit/VOC2012 train.epochs=40 run_dir=runs/voc",
        ),
        (
            "the resolved settings as YAML, nothing trained (save them to edit and train: dualteacher train my.yaml)",
            "dualteacher train digits_dual_teacher method.icl_weight=0.5 --print-config",
        ),
    ],
    "eval": [
        (
            "the best network of a run on its own val split",
            "dualteacher eval runs/my_data_dual_teacher/best.safetensors",
        ),
        (
            "a benchmark checkpoint with sliding windows and multi-scale flip testing, as JSON",
            (
                "dualteacher eval runs/voc/best.safetensors --data VOCdevkit/VOC2012 --mode slide --scales 0.75 1 1.25 "
                "--flip --json"
            ),
        ),
    ],
    "split": [
        (
            "1/8 of your folder's train images labelled (writes labeled_1-8_seed1.txt and unlabeled_1-8_seed1.txt)",
            "dualteacher split --data ~/my_data --labeled 1/8 --seed 1",
        ),
        (
            "a published split of a benchmark",
            "dualteacher split --dataset voc --data VOCdevkit/VOC2012 --import 92.txt --name u2pl_92",
        ),
    ],
    "init": [
        (
            "make a folder of images/ and masks/ trainable (class names from the masks)",
            "dualteacher init --data ~/my_data",
        ),
        (
            "name the classes and hold out a tenth of the masked images for validation",
            "dualteacher init --data ~/my_data --classes background road car --val 0.1",
        ),
        (
            "masks saved as colours or 0/255: a converted copy",
            "dualteacher init --data ~/raw_data --indexed-copy ~/my_data",
        ),
    ],
    "check-data": [
        ("the splits 'dualteacher init' wrote", "dualteacher check-data --data ~/my_data"),
        (
            "the data a config trains on, as JSON",
            "dualteacher check-data voc_classic_r101 data.root=VOCdevkit/VOC2012 --json",
        ),
    ],
    "make-digits": [
        ("the digit scenes of the demo and the tests", "dualteacher make-digits --out data/digits"),
        ("a tiny set", "dualteacher make-digits --out data/tiny --num-train 64 --num-val 16 --size 48"),
    ],
    "demo": [
        ("supervised, Mean Teacher and Dual Teacher on digit scenes (CPU, minutes)", "dualteacher demo"),
        (
            "a quicker look at two methods",
            "dualteacher demo --methods supervised dual_teacher --iterations 100 --out runs/quick",
        ),
    ],
    "compare": [
        (
            "every method on your partly labelled folder (its images with a mask labelled), 3 seeds",
            "dualteacher compare --data ~/my_data --labeled masked --out results/mine",
        ),
        (
            "two label budgets, each run about 5 minutes, 2 seeds",
            "dualteacher compare --data ~/my_data --labeled 1/16 1/8 --minutes 5 --seeds 0 1 --out results/mine",
        ),
        (
            "tabulate the finished runs only",
            "dualteacher compare --data ~/my_data --labeled 1/16 1/8 --out results/mine --report-only",
        ),
    ],
    "predict": [
        (
            "class maps of every image in a folder",
            "dualteacher predict runs/my_data_dual_teacher/best.safetensors photos/ --out predictions",
        ),
        (
            "a glob, with overlays, in overlapping tiles on the GPU",
            (
                "dualteacher predict runs/my_data_dual_teacher/best.safetensors 'data/**/*.jpg' --out predictions --overlay "
                "--mode slide --device cuda"
            ),
        ),
    ],
    "export": [
        (
            "the best network as ONNX, checked against PyTorch",
            "dualteacher export runs/my_data_dual_teacher/best.safetensors --onnx model.onnx",
        ),
        (
            "a teacher of a training checkpoint, unchecked",
            (
                "dualteacher export runs/my_data_dual_teacher/last.safetensors --model teacher1 --onnx teacher.onnx "
                "--no-check"
            ),
        ),
    ],
    "push": [
        (
            "the hub layout written to a folder (nothing uploaded)",
            "dualteacher push runs/my_data_dual_teacher --repo-id me/my-segmenter --local-dir hub/my-segmenter",
        ),
        (
            "uploaded to a new private repository",
            "dualteacher push runs/my_data_dual_teacher --repo-id me/my-segmenter --private",
        ),
    ],
    "report": [
        ("a run's curves to RUN_DIR/report.png", "dualteacher report runs/my_data_dual_teacher"),
        ("elsewhere", "dualteacher report runs/my_data_dual_teacher --out figures/dual_teacher.png"),
    ],
}
"""The examples each sub-command's ``--help`` ends with: (what it does, the command)."""


def examples_text(examples: Sequence[tuple[str, str]]) -> str:
    """The ``examples:`` section of a help text: each command under its comment (none when empty)."""
    return "examples:\n" + "\n".join((f"  # {why}\n" if why else "") + f"  {command}" for why, command in examples)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from dualteacher.experiments.budgets import BUDGETS
    from dualteacher.registry import EVAL_MODES, METHODS

    parser = Parser(
        prog="dualteacher",
        description="Semi-supervised semantic segmentation with Dual Teacher.",
        formatter_class=HelpFormatter,
        epilog=examples_text(
            [
                ("the built-in comparison on digit scenes, offline", "dualteacher demo"),
                ("your own folder of images/ and masks/", "dualteacher init --data ~/my_data"),
                ("", "dualteacher train --data ~/my_data --method mean_teacher"),
                (
                    "which method helps on it (one table)",
                    "dualteacher compare --data ~/my_data --labeled masked --out runs/cmp",
                ),
                ("a command's options and examples", "dualteacher train --help"),
            ]
        )
        + "\n\n"
        "Optional parts: the built-in digit scenes (demo, make-digits) need pip install 'dualteacher[demo]';\n"
        "checking an ONNX export needs 'dualteacher[export]'. Without a command this help is printed\n"
        f"(exit status {NO_COMMAND_STATUS}).",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=examples_text(EXAMPLES[name]),
            formatter_class=HelpFormatter,
        )

    p = command(
        "train",
        "train a model: on your folder with the built-in recipe (--data ROOT --method NAME) or from "
        "a YAML config (any key overridable: train.epochs=40)",
    )
    p.add_argument(
        "config",
        nargs="?",
        help="experiment YAML, or a shipped config by name (voc_classic_r101; configs/NAME.yaml works too)",
    )
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. method.name=dual_teacher")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved settings as YAML and exit without training (with --data --method: the "
        "recipe's choices as comments, then the warm-up's settings and the run's)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="require a checkpoint in run_dir to continue from (a run dir with one is resumed anyway)",
    )
    p.add_argument(
        "--no-resume", action="store_true", help="refuse to continue a run directory that holds a checkpoint"
    )
    p.add_argument(
        "--resume-with-changes",
        action="store_true",
        help="continue a checkpoint whose settings differ, if every change is safe (more epochs, cadence, "
        "device, ...); without it any difference is listed and refused",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--device",
        help=f"where to train, sets train.device: {DEVICE_HELP} (default: the config's train.device, auto unless set)",
    )
    _data_options(p, required=False)
    p.add_argument(
        "--method",
        choices=tuple(METHODS),
        help="with --data and no config: train this method with the built-in recipe fitted to the data "
        "(splits from 'dualteacher init', crop and val batch from the images, a supervised warm "
        "start for semi-supervised methods), printing each choice",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--iterations",
        type=_positive,
        help="with --method: iterations in all, warm-up included (default: the recipe's 1000)",
    )
    length.add_argument(
        "--minutes",
        type=float,
        help="with --method: iterations such that the run trains about this long, from a timed probe",
    )
    p.add_argument(
        "--warmup",
        type=_non_negative,
        help="with --method: supervised warm-up iterations (default: 3/10 of the run for a "
        "semi-supervised method, none for supervised; 0: none)",
    )
    p.set_defaults(func=_cmd_train)

    p = command("eval", "score a checkpoint on a split of a dataset")
    _checkpoint_argument(p)
    _data_options(p, required=False)
    p.add_argument("--split", help="default: the run's data.val_split on its own data, else val")
    p.add_argument("--model", help="which network of a training checkpoint: student (default), teacher1, ...")
    p.add_argument(
        "--mode",
        choices=tuple(EVAL_MODES),
        help="whole image, centre crop (image and label) or sliding window (default: data.eval_mode)",
    )
    p.add_argument("--tile", type=_positive, help="centre-crop / window size (default: data.eval_tile or crop_size)")
    p.add_argument("--stride", type=_positive, help="slide: step between windows (default: 2/3 of the tile)")
    _test_time_options(p)
    p.add_argument("--batch-size", type=_positive, help="default: data.val_batch_size of the checkpoint")
    p.add_argument(
        "--ignore-index",
        type=int,
        metavar="VALUE",
        help="folder layout: mask value of unlabelled pixels (default: the run's data.ignore_index)",
    )
    p.add_argument("--workers", type=int, default=0, help="data-loading processes")
    _device_option(p, "to evaluate")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=_cmd_eval)

    p = command("split", "write nested labelled/unlabelled lists, or import public split files")
    _data_options(p, required=True)
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument(
        "--labeled",
        help="a count (92) or a fraction (1/16, 0.125) of the source split, or 'masked': "
        "its images that have a mask file (the others unlabelled)",
    )
    budget.add_argument(
        "--import",
        dest="import_labeled",
        type=Path,
        metavar="FILE",
        help="a labelled list to import (UniMatch/U2PL 'image mask' lines, or ids / file names)",
    )
    p.add_argument(
        "--import-unlabeled", type=Path, metavar="FILE", help="its unlabelled list (default: the rest of the pool)"
    )
    p.add_argument("--name", help="list names: labeled_<name>.txt (default for --labeled: <budget>_seed<seed>)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw")
    p.add_argument("--source", default="train", help="split to draw the labelled images from")
    p.set_defaults(func=_cmd_split)

    p = command(
        "init",
        "make a folder of images/ and masks/ (some images without one) trainable: "
        "writes classes.txt, the split lists and, for binary masks saved as 0/255, "
        "mask_values.json (255 = class 1), never touching your files",
    )
    p.add_argument("--data", required=True, help="the folder holding images/<id>.jpg|.jpeg|.png and masks/<id>.png")
    p.add_argument(
        "--classes",
        nargs="+",
        metavar="NAME",
        help="class names, class 0 first (default: background, class_1, ... for the mask values found)",
    )
    p.add_argument(
        "--val",
        type=_fraction,
        default=0.2,
        help="share of the images with a mask drawn for validation (default: 0.2; at least 1 image, "
        "and 2 masked images always stay for training)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the val draw")
    p.add_argument(
        "--force",
        action="store_true",
        help="draw the split lists again and replace them (and classes.txt, when --classes is given)",
    )
    p.add_argument(
        "--indexed-copy",
        type=Path,
        metavar="DIR",
        help="for masks that are not class indices (colour, 1-bit, 16-bit; binary 0/255 masks need no "
        "copy, init records their map): write a copy of the dataset to DIR with class-index masks "
        "(images hard-linked) and prepare it",
    )
    p.set_defaults(func=_cmd_init)

    p = command("check-data", "list every problem of a dataset's files, masks and splits (exit 1: errors)")
    p.add_argument("config", nargs="?", help="experiment YAML whose data section (and method) name the splits")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.val_split=val")
    _data_options(p, required=False)
    p.add_argument("--labeled-split", help="labelled split (default: the config's data.labeled_split)")
    p.add_argument("--unlabeled-split", help="unlabelled split; checked when given or when the method uses one")
    p.add_argument("--val-split", help="val split (default: the config's data.val_split)")
    p.add_argument(
        "--full",
        action="store_true",
        help="decode every file again, even those the cache knows unchanged (every check, and train's, "
        "decodes each new or changed file once)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--workers", type=int, help="processes reading files (default: data.workers, as train; 0: in this process)"
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="read every file, neither using nor updating the cache of files checked before",
    )
    p.add_argument("--limit", type=_positive, default=10, help="findings printed per kind")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_check_data)

    p = command("make-digits", "write the built-in digit-scenes dataset to a folder")
    p.add_argument("--out", required=True, type=Path, help="the dataset's folder (images/, masks/, splits/)")
    p.add_argument("--num-train", type=int, default=3000, help="train scenes")
    p.add_argument("--num-val", type=int, default=500, help="val scenes")
    p.add_argument("--size", type=int, default=None, help="scene side in pixels (default: the benchmark's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenes")
    p.set_defaults(func=_cmd_make_digits)

    p = command("demo", "the built-in comparison on digit scenes (offline)")
    p.add_argument("--out", default="runs/demo", help="output directory (finished runs in it are reused)")
    p.add_argument(
        "--methods",
        nargs="+",
        choices=tuple(METHODS),
        help="methods to train (default: supervised, Mean Teacher and Dual Teacher)",
    )
    p.add_argument(
        "--iterations", type=_positive, default=None, help="iterations of each method after the warm-up (default: 200)"
    )
    p.add_argument(
        "--warmup",
        type=_non_negative,
        default=None,
        help="supervised iterations every method starts from (default: 300; 0: none)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the labelled split and of training")
    p.add_argument("--no-upper-bound", action="store_true", help="skip supervised training on every train scene")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)

    p = command("compare", "does semi-supervised training help on my data? every method with one recipe")
    _data_options(p, required=True)
    p.add_argument(
        "--labeled",
        nargs="+",
        required=True,
        help="label budgets: fractions (1/16 1/8) or counts (50) of the train split, or 'masked': the "
        "train images that have a mask file, the others unlabelled (your own partly labelled data)",
    )
    p.add_argument("--methods", nargs="+", default=list(METHODS), help="methods to run")
    p.add_argument(
        "--variants",
        nargs="+",
        default=[],
        help="extra variants: dual_teacher_persistent, or METHOD+key=value[+key=value] for a method with "
        "its own settings changed, e.g. dual_teacher+shift=150",
    )
    p.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds, each its own labelled split and training run"
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--iterations",
        type=_positive,
        help="iterations per run after the warm-up (default: the recipe's 1000 less the warm-up)",
    )
    length.add_argument(
        "--minutes", type=float, help="iterations after the warm-up such that Dual Teacher trains about this long"
    )
    p.add_argument(
        "--budget",
        nargs="+",
        default=["iterations"],
        choices=BUDGETS,
        help="iterations: every method trains as many iterations; time: every method also gets Dual "
        "Teacher's training time",
    )
    p.add_argument("--upper-bound", action="store_true", help="also supervised with every train image labelled")
    p.add_argument(
        "--warmup",
        type=_non_negative,
        default=None,
        help="supervised iterations on each labelled split that every method starts from (counted in "
        "every time; default: the recipe's 300; 0: none, every run from the encoder)",
    )
    p.add_argument("--jobs", type=_positive, default=1, help="runs at a time (the CPU threads are shared out)")
    p.add_argument("--out", required=True, type=Path, help="summary.json, table.md, figures, summaries/")
    p.add_argument("--runs", type=Path, help="run directories (default: OUT/runs)")
    p.add_argument("--report-only", action="store_true", help="train nothing: tabulate the finished runs")
    p.add_argument("overrides", nargs="*", help="key=value settings for every run, e.g. train.amp=off")
    p.set_defaults(func=_cmd_compare)

    p = command("predict", "class maps (palette PNGs) for images, folders or globs")
    _checkpoint_argument(p)
    p.add_argument("inputs", nargs="+", help="image files, folders (not recursive) or quoted globs ('data/**/*.jpg')")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--model", help="which network of a training checkpoint: student (default), teacher1, ...")
    p.add_argument(
        "--mode",
        choices=tuple(EVAL_MODES),
        help="whole image at once or overlapping tiles (default: the run's data.eval_mode); center "
        "predicts whole images",
    )
    p.add_argument("--tile", type=_positive, help="slide: tile size (default: data.eval_tile or crop_size)")
    p.add_argument(
        "--stride", type=_positive, help="slide: step between tiles (default: data.eval_stride, else 2/3 of the tile)"
    )
    _test_time_options(p)
    p.add_argument("--batch-size", type=_positive, default=4, help="images per forward pass")
    p.add_argument("--overlay", action="store_true", help="also write overlays/<name>.png (image + class colours)")
    p.add_argument("--probs", action="store_true", help="also write probs/<name>.npy (float16 [C,H,W] probabilities)")
    _device_option(p, "to predict")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)

    p = command("export", "export a checkpoint's network to ONNX (needs the 'export' extra)")
    p.add_argument("checkpoint", type=Path, help="a checkpoint file or a run directory's best.safetensors")
    p.add_argument("--onnx", required=True, type=Path, help="output .onnx file (a .json with classes goes next to it)")
    p.add_argument("--model", help="which network of a training checkpoint: student (default), teacher1, ...")
    p.add_argument("--no-check", action="store_true", help="skip comparing onnxruntime's output with PyTorch's")
    p.add_argument(
        "--torchscript",
        action="store_true",
        help="use the TorchScript-based exporter (dynamo=False) instead of trying the dynamo exporter first",
    )
    p.set_defaults(func=_cmd_export)

    p = command("push", "share a trained model in the Hugging Face hub layout (needs the 'hub' extra)")
    p.add_argument("source", type=Path, help="run directory (its best.safetensors) or checkpoint file")
    p.add_argument(
        "--repo-id",
        required=True,
        metavar="ORG/NAME",
        help="hub repository, also named in the model card and its eval command",
    )
    p.add_argument(
        "--local-dir",
        type=Path,
        metavar="DIR",
        help="write model.safetensors, config.json and README.md here instead of uploading",
    )
    p.add_argument(
        "--model",
        help="which network: student, teacher1, ... (default: the one best.safetensors "
        "holds; a run directory's last.safetensors for another)",
    )
    p.add_argument("--private", action="store_true", help="create the hub repository private (upload only)")
    p.set_defaults(func=_cmd_push)

    p = command("report", "plot a run's curves (losses, LR, mIoU, coupling) into one PNG")
    p.add_argument("run_dir", type=Path, help="a run directory (its metrics.jsonl)")
    p.add_argument("--out", type=Path, help="output PNG (default: RUN_DIR/report.png)")
    p.set_defaults(func=_cmd_report)
    return parser


def sub_commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of each sub-command of ``parser``, by name."""
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.\w+)+=")
"""A ``key=value`` override (dotted key) among a command's words."""


def _unrecognized(command: argparse.ArgumentParser, words: list[str]) -> str:
    """argparse's message for ``words`` that no option takes, with the nearest option of
    ``command`` suggested for a mistyped one (``--qiuet``: did you mean --quiet?)."""
    options = [option for action in command._actions for option in action.option_strings]
    hints = [did_you_mean(word.partition("=")[0], options) for word in words if word.startswith("-")]
    return f"unrecognized arguments: {' '.join(words)}" + "".join(f" ({hint})" for hint in hints if hint)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse a command line in which options may come before, between or after a sub-command's
    positional arguments (``train configs/x.yaml --quiet train.epochs=1``). Unknown options and
    an unknown sub-command exit with argparse's message (status 2) and the nearest known one,
    ``--help`` and ``--version`` with status 0; an empty command line prints the help to stdout
    and exits with :data:`NO_COMMAND_STATUS` (2)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.print_help()
        parser.exit(NO_COMMAND_STATUS)
    commands = sub_commands(parser)
    if argv[0] not in commands:
        return parser.parse_args(argv)
    command = commands[argv[0]]
    words = argv[1:]
    takes_overrides = any(action.dest == "overrides" for action in command._actions)
    pulled = [w for w in words if OVERRIDE.match(w)] if takes_overrides else []
    args, unknown = command.parse_known_intermixed_args([w for w in words if w not in pulled] if pulled else words)
    if unknown:
        command.error(_unrecognized(command, unknown))
    if pulled:  # taken out first, so that a list option (--labeled 1/16 ...) cannot swallow them
        args.overrides = [*args.overrides, *pulled]
    args.command = argv[0]
    return args


USER_ERRORS = (
    "dualteacher.config:ConfigError",
    "dualteacher.registry:PluginError",
    "dualteacher.extras:MissingExtraError",
    "dualteacher.data.core:DataError",
    "dualteacher.checkpoint:CheckpointError",
    "builtins:FloatingPointError",
)
"""The errors ``dualteacher`` reports as ``error: MESSAGE`` with exit status 2 (no traceback)."""


def user_error(err: BaseException) -> bool:
    """Whether ``err`` is one of :data:`USER_ERRORS`. Only modules already imported are asked (one
    that is not cannot have raised its error), so a settings error is reported without importing
    PyTorch."""
    for name in USER_ERRORS:
        module, _, cls = name.partition(":")
        if module in sys.modules and isinstance(err, getattr(sys.modules[module], cls)):
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dualteacher`` console script."""
    args = parse_args(argv)
    from dualteacher.logs import console

    try:
        with console():  # the library's messages (logging) as plain lines on stdout
            return args.func(args)
    except Exception as err:
        if not user_error(err):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
