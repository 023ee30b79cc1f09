"""Sliding-window evaluation: one window per forward pass against windows in batches.

Times :func:`~dualteacher.inference.metrics.sliding_window_logits` on one random image with a
random-init network (no downloads), side by side in one run: each repeat runs window-at-a-time
(``window_batch=1``) and then each batched setting (``--window-batch``), and the table gives
the median and minimum seconds per image of each, the number of forward passes, and the
speed-up (median window-at-a-time / median batched). It also checks that each gives the
window-at-a-time result: the largest difference of the stitched log-probabilities and the
share of pixels whose argmax differs. On CUDA it adds the peak memory of each
(``torch.cuda.max_memory_allocated``).

    python benchmarks/sliding_window.py --threads 1                  # 1024x2048, window 769, R18 DeepLabV3+
    python benchmarks/sliding_window.py --encoder tu-tf_efficientnet_lite0 --device cuda
    python benchmarks/sliding_window.py --smoke                      # 64x128, window 48: checks the script runs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from dualteacher.inference.metrics import logits_predictor, sliding_window_logits, window_starts
from dualteacher.models.contract import IMAGENET_MEAN_STD
from dualteacher.models.smp import build_model

SMOKE = ["--height", "64", "--width", "128", "--tile", "48", "--repeats", "1", "--warmup", "0", "--classes", "4"]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="deeplabv3plus")
    p.add_argument("--encoder", default="resnet18", help="an SMP encoder name (default: resnet18, as timm's)")
    p.add_argument("--classes", type=int, default=19)
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--tile", type=int, default=769, help="window side")
    p.add_argument("--stride", type=int, help="step between windows (default: 2/3 of the tile)")
    p.add_argument(
        "--window-batch",
        type=int,
        nargs="+",
        default=[8],
        help="windows per forward pass of the batched run(s), e.g. 2 4 8 (default: 8)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each first")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    p.add_argument("--smoke", action="store_true", help="a 64x128 image, window 48, one repeat: checks the script runs")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    return p.parse_args([*SMOKE, *argv]) if args.smoke else args  # given options still win


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per image of window-at-a-time and of each batched setting, and how far they differ.

    Returns ``{"rows": [...], "windows": n}``, one row per window_batch (1 first) with
    ``window_batch``, ``passes``, ``median_s``, ``min_s``, ``peak_mib`` (None off CUDA),
    ``speedup`` (median of window_batch 1 / this median), ``max_abs_diff`` and
    ``argmax_mismatch`` (against window_batch 1).
    """
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    network = build_model(args.arch, args.encoder, args.classes).to(device).eval()
    predict = logits_predictor(network, *IMAGENET_MEAN_STD)
    passes: list[int] = []

    def counted(images: Tensor) -> Tensor:
        passes.append(images.shape[0])
        return predict(images)

    image = torch.rand(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(0)).to(device)
    stride = args.stride or max(1, args.tile * 2 // 3)
    windows = len(window_starts(args.height, args.tile, stride)) * len(window_starts(args.width, args.tile, stride))
    variants = tuple(dict.fromkeys([1, *args.window_batch]))
    times: dict[int, list[float]] = {v: [] for v in variants}
    peaks: dict[int, float | None] = dict.fromkeys(variants)
    outputs: dict[int, Tensor] = {}
    calls: dict[int, int] = {}
    with torch.no_grad():
        for repeat in range(args.warmup + args.repeats):
            for window_batch in variants:  # side by side, so drift in the machine's speed hits both
                passes.clear()
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                sync(device)
                start = time.perf_counter()
                outputs[window_batch] = sliding_window_logits(
                    counted, image, args.tile, stride, window_batch=window_batch
                )
                sync(device)
                if repeat >= args.warmup:
                    times[window_batch].append(time.perf_counter() - start)
                calls[window_batch] = len(passes)
                if device.type == "cuda":
                    peaks[window_batch] = torch.cuda.max_memory_allocated(device) / 2**20
    one = outputs[1]
    base = statistics.median(times[1])
    rows = [
        {
            "window_batch": v,
            "passes": calls[v],
            "median_s": statistics.median(times[v]),
            "min_s": min(times[v]),
            "peak_mib": peaks[v],
            "speedup": base / statistics.median(times[v]),
            "max_abs_diff": float((outputs[v] - one).abs().max()),
            "argmax_mismatch": float((outputs[v].argmax(1) != one.argmax(1)).float().mean()),
        }
        for v in variants
    ]
    return {"rows": rows, "windows": windows}


def table(args: argparse.Namespace, result: dict[str, Any]) -> str:
    """The measurement as a markdown table with a heading line."""
    stride = args.stride or max(1, args.tile * 2 // 3)
    lines = [
        (
            f"{args.arch} {args.encoder} (random init, {args.classes} classes), one {args.height}x{args.width} image, "
            f"window {args.tile}, stride {stride}: {result['windows']} windows; {args.device}, "
            f"{args.threads} thread(s), median of {args.repeats} after {args.warmup} warm-up"
        ),
        "",
        "| window_batch | forward passes | median s/image | min s/image | speed-up | max abs diff | argmax mismatch | peak MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        peak = "–" if row["peak_mib"] is None else f"{row['peak_mib']:.0f}"
        lines.append(
            f"| {row['window_batch']} | {row['passes']} | {row['median_s']:.3f} | {row['min_s']:.3f} | "
            f"{row['speedup']:.2f}x | {row['max_abs_diff']:.1e} | {row['argmax_mismatch']:.4%} | {peak} |"
        )
    lines += [
        "",
        (
            "speed-up: median s/image of window_batch 1 / this row's; diff and mismatch: stitched "
            "log-probabilities and argmax against window_batch 1"
        ),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(table(args, measure(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
