"""What one training iteration costs, per method, against the passes it cannot avoid.

Builds real :class:`~dualteacher.training.loop.Trainer` objects on generated digit scenes at the
requested size (random-init model, no downloads) and times, on the same machine in one run:

  supervised / Mean Teacher / Dual Teacher step   ``Trainer.train_step``: the method's step under the
                                                 run's autocast, optimiser step, EMA update
  teacher forward                                the active teacher, no grad, on the unlabelled batch
  student fwd+bwd 3B                             one student pass + backward on [labelled, unlabelled,
                                                 unlabelled] (the shape of Dual Teacher's pass)

and reports Dual Teacher step / (teacher forward + student fwd+bwd 3B), the overhead of strong
augmentation, mixing, losses, optimiser step and EMA (target <= 1.10), Dual Teacher / supervised,
the input pipeline's images/s (the training DataLoader with ``data.workers`` processes) against
what a Dual Teacher step consumes (target >= 2x headroom), and peak memory: on CUDA
``torch.cuda.max_memory_allocated`` per measurement; on CPU the process's peak resident set
(``getrusage`` maxrss, which only grows, so it is the peak up to and including that line).

Batches are fetched once and reused, so step times exclude data loading. Medians over
``--repeats`` after ``--warmup`` iterations.

    python benchmarks/step_cost.py --arch deeplabv3plus --encoder tu-tf_efficientnet_lite0 --size 64 --batch 8

``key=value`` settings go last and apply to every trainer (the tests run it at 32 px with
``model.decoder_channels=16``). The last measurement is in ``docs/benchmarks/step_cost.md``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dualteacher.config import default_workers, load_config
from dualteacher.data.digits import generate_digit_scenes
from dualteacher.data.registry import open_source
from dualteacher.data.split_files import split_source
from dualteacher.methods import Batch
from dualteacher.methods.common import pseudo_label
from dualteacher.training.loop import Trainer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall time of ``fn`` in seconds (device synchronised around each call)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(device: torch.device) -> str:
    """Peak since the last reset (CUDA) or the process's peak RSS so far (CPU), in MiB."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
        return f"{peak:.0f} MiB alloc"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB rss"


def make_trainer(args: argparse.Namespace, data: Path, splits: list[str], method: str, run_dir: Path) -> Trainer:
    overrides = [
        f"data.root={data}",
        f"data.labeled_split={splits[0]}",
        f"data.unlabeled_split={splits[1]}",
        f"data.crop_size={args.size}",
        f"data.workers={args.workers}",
        f"model.arch={args.arch}",
        f"model.encoder={args.encoder}",
        f"method.name={method}",
        f"train.batch_size={args.batch}",
        f"train.device={args.device}",
        f"train.amp={args.amp}",
        f"train.channels_last={str(args.channels_last).lower()}",
        "train.epochs=1",
        "train.iters_per_epoch=1000",
        f"run_dir={run_dir}",
        *args.overrides,
    ]
    return Trainer(load_config(None, overrides), resume=False, progress=False)


def fixed_batches(trainer: Trainer) -> tuple[Batch, Batch | None]:
    """The run's first (labelled, unlabelled or None) batch pair on the trainer's device."""
    return next(trainer.batches.start(0))


def step_fn(trainer: Trainer) -> Callable[[], object]:
    """One full training iteration on fixed batches, as ``Trainer.fit`` runs it."""
    labeled, unlabeled = fixed_batches(trainer)
    trainer.method.begin_step(0, 0)
    trainer.method.train()
    gen = torch.Generator(trainer.device).manual_seed(0)
    return lambda: trainer.train_step(labeled, unlabeled, gen)


def pass_fns(trainer: Trainer) -> tuple[Callable[[], object], Callable[[], object]]:
    """The teacher's no-grad forward on the unlabelled batch; the student's fwd+bwd on 3B images."""
    labeled, unlabeled = fixed_batches(trainer)
    assert unlabeled is not None
    method, amp, device = trainer.method, trainer.amp_dtype, trainer.device
    method.begin_step(0, 0)
    teacher = method.pool.active
    images = method.norm(torch.cat([labeled.image, unlabeled.image, unlabeled.image]))

    def teacher_forward() -> None:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            pseudo_label(teacher, method.norm(unlabeled.image))

    def student_pass() -> None:
        method.student.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = method.net(images).float().mean()
        loss.backward()

    return teacher_forward, student_pass


def pipeline_rate(trainer: Trainer, batches: int) -> float:
    """Images/s the training DataLoaders deliver (labelled + unlabelled), workers warmed up."""
    lab_iter, unl_iter = trainer.batches.loaders(0)
    if unl_iter is None:
        raise ValueError(f"pipeline_rate needs a method that reads unlabelled data, not {trainer.cfg.method.name}")
    for _ in range(2):
        next(lab_iter), next(unl_iter)
    start = time.perf_counter()
    for _ in range(batches):
        next(lab_iter), next(unl_iter)
    images = trainer.schedule.batch_labeled + trainer.schedule.batch_unlabeled
    return batches * images / (time.perf_counter() - start)


def build_parser() -> argparse.ArgumentParser:
    """The script's options; ``key=value`` overrides go last and apply to every trainer."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="deeplabv3plus")
    parser.add_argument("--encoder", default="tu-tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=64, help="square crop size")
    parser.add_argument("--batch", type=int, default=8, help="labelled = unlabelled batch size")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"))
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument(
        "--workers", type=int, default=default_workers(), help="DataLoader workers (default: data.workers)"
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "overrides",
        nargs="*",
        default=[],
        help="key=value settings applied after the script's own (e.g. model.decoder_channels=32)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table (see the module docstring); exit status 0."""
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate_digit_scenes(data, num_train=8 * args.batch, num_val=4, size=args.size, seed=0)
        splits = [path.stem for path in split_source(open_source("folder", data), "1/2", 0)]
        rows: list[tuple[str, float, str]] = []
        times: dict[str, float] = {}
        for method in ("supervised", "mean_teacher", "dual_teacher"):
            trainer = make_trainer(args, data, splits, method, Path(tmp) / method)
            device = trainer.device
            peak_memory(device)
            times[method] = median_time(step_fn(trainer), device, args.warmup, args.repeats)
            rows.append((f"{method} step", times[method], peak_memory(device)))
        teacher_forward, student_pass = pass_fns(trainer)
        for name, fn in (("teacher forward (no grad, B)", teacher_forward), ("student fwd+bwd (3B)", student_pass)):
            times[name] = median_time(fn, device, args.warmup, args.repeats)
            rows.append((name, times[name], peak_memory(device)))
        rate = pipeline_rate(trainer, batches=max(8, args.repeats))

    necessary = times["teacher forward (no grad, B)"] + times["student fwd+bwd (3B)"]
    consumption = 2 * args.batch / times["dual_teacher"]
    print(
        f"{args.arch} / {args.encoder}, {args.size}x{args.size}, batch {args.batch}+{args.batch}, "
        f"device {device}, amp {trainer.amp_dtype or 'off'}, channels_last {args.channels_last}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"| {'measurement':<30} | {'median ms':>10} | {'peak memory':>16} |")
    print(f"|{'-' * 32}|{'-' * 12}|{'-' * 18}|")
    for name, seconds, memory in rows:
        print(f"| {name:<30} | {seconds * 1e3:>10.1f} | {memory:>16} |")
    print(f"| {'sum of necessary passes':<30} | {necessary * 1e3:>10.1f} | {'':>16} |")
    print()
    print(f"Dual Teacher step / necessary passes: {times['dual_teacher'] / necessary:.2f}  (target <= 1.10)")
    print(f"Dual Teacher step / supervised step:  {times['dual_teacher'] / times['supervised']:.2f}")
    print(
        f"input pipeline: {rate:.0f} images/s with {args.workers} workers; a Dual Teacher step consumes "
        f"{consumption:.0f} images/s: headroom {rate / consumption:.1f}x  (target >= 2x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
