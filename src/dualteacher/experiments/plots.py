"""Figures: the demo comparison (mIoU curves, coupling curves, predictions on val scenes), the
method comparison (mIoU against training time), a run's report (every curve of its
``metrics.jsonl``) and the pseudo-label pictures drawn during training."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import cycle
from pathlib import Path
from typing import TYPE_CHECKING, cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor, nn

from dualteacher.data.source import DataSource
from dualteacher.inference.colors import colorize, palette
from dualteacher.inference.model import LoadedModel, load_model
from dualteacher.models.contract import normalize
from dualteacher.runlog import read_log

if TYPE_CHECKING:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

TEACHER_STYLES = ("--", ":", "-.")
"""Line styles of a run's teachers, in order (Dual Teacher's two must be told apart)."""


def _eval_records(run_dir: Path) -> list[dict]:
    return [r for r in read_log(run_dir) if r.get("type") == "eval"]


def plot_miou(
    ax: plt.Axes, runs: dict[str, Path], offsets: dict[str, int] | None = None, warmup: Path | None = None
) -> None:
    """Val mIoU over iterations: the student solid, each teacher dashed in the same colour.

    ``offsets`` shifts a run's iterations (a warm-started run starts after its warm-up);
    ``warmup`` draws that run's student in grey, and every shifted run's lines start from its end."""
    offsets = offsets or {}
    start: list[tuple[int, float]] = []
    if warmup is not None:
        recs = _eval_records(warmup)
        its, mious = [r["iteration"] for r in recs], [r["student/miou"] for r in recs]
        ax.plot(its, mious, color="0.5", label="warm-up (supervised)")
        start = [(its[-1], mious[-1])] if its else []
    for label, run_dir in runs.items():
        recs = _eval_records(run_dir)
        first = start if label in offsets else []
        its = [i for i, _ in first] + [r["iteration"] + offsets.get(label, 0) for r in recs]
        line = ax.plot(its, [m for _, m in first] + [r["student/miou"] for r in recs], label=f"{label} student")[0]
        teacher_keys = sorted({k for r in recs for k in r if k.endswith("/miou") and not k.startswith("student")})
        for key, style in zip(teacher_keys, cycle(TEACHER_STYLES)):
            ax.plot(
                its,
                [m for _, m in first] + [r.get(key, np.nan) for r in recs],
                style,
                color=line.get_color(),
                alpha=0.6,
                label=f"{label} {key.split('/')[0]}",
            )
    ax.set_xlabel("iteration")
    ax.set_ylabel("val mIoU")
    ax.set_title("val mIoU over training")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def plot_coupling(
    ax: plt.Axes, runs: dict[str, Path], metric: str = "disagreement", offsets: dict[str, int] | None = None
) -> None:
    """A coupling metric (``disagreement``, ``kl`` or ``param_distance``) of every teacher over
    iterations (``offsets`` as in :func:`plot_miou`)."""
    offsets = offsets or {}
    for label, run_dir in runs.items():
        recs = _eval_records(run_dir)
        keys = sorted({k for r in recs for k in r if k.startswith("coupling/") and k.endswith(f"/{metric}")})
        for key in keys:
            ax.plot(
                [r["iteration"] + offsets.get(label, 0) for r in recs],
                [r.get(key, np.nan) for r in recs],
                label=f"{label} {key.split('/')[1]}",
            )
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"teacher-student {metric.replace('_', ' ')}")
    ax.set_title(f"coupling: {metric.replace('_', ' ')} (0 = teacher copies student)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def digit_accuracy(prediction: np.ndarray, mask: np.ndarray, ignore_index: int = 255) -> float:
    """Share of the labelled foreground pixels (class > 0, not ``ignore_index``) of ``mask`` [H, W]
    that ``prediction`` [H, W] gets right; NaN for an image without foreground."""
    foreground = (mask > 0) & (mask != ignore_index)
    return float((prediction[foreground] == mask[foreground]).mean()) if foreground.any() else float("nan")


def most_disputed(predictions: np.ndarray, count: int) -> list[int]:
    """Indices of the ``count`` images on which the runs' predictions [R, N, H, W] disagree on the
    most pixels (pixels where not every run predicts the same class), most disputed first. The
    choice looks only at the predictions, never at the ground truth, so it favours no run."""
    disputed = (predictions != predictions[:1]).any(axis=0).sum(axis=(1, 2))
    return [int(i) for i in np.argsort(-disputed, kind="stable")[:count]]


def final_students(out: Path, runs: Sequence[str]) -> dict[str, LoadedModel]:
    """Each run's student at the end of training, from ``out/<run>/last.safetensors``: the network
    whose mIoU the demo and the comparison report (``best.safetensors`` may hold a teacher)."""
    return {run: load_model(out / run / "last.safetensors", role="student") for run in runs}


def demo_figure(
    out: Path,
    methods: list[str],
    source: DataSource,
    scenes: int = 4,
    offsets: dict[str, int] | None = None,
    warmup: Path | None = None,
    pool: int = 100,
    disputed_by: Sequence[str] | None = None,
) -> Path:
    """Write ``out/demo.png``: mIoU over training (``offsets`` and ``warmup`` as in
    :func:`plot_miou`), coupling over training, and each run's final student (the network whose
    mIoU the demo's table reports, from ``last.safetensors``) predicting the ``scenes`` of the
    first ``pool`` ``val`` images where the runs ``disputed_by`` (default: all) disagree most
    (:func:`most_disputed`), each titled with its digit-pixel accuracy (:func:`digit_accuracy`)."""
    fig = plt.figure(figsize=(15, 4 + 2.2 * scenes))
    grid = fig.add_gridspec(1 + scenes, len(methods) + 2, height_ratios=[2.2] + [1.0] * scenes)
    half = (len(methods) + 2) // 2
    runs = {m: out / m for m in methods}
    plot_miou(fig.add_subplot(grid[0, :half]), runs, offsets, warmup)
    plot_coupling(fig.add_subplot(grid[0, half:]), runs, offsets=offsets)

    models = final_students(out, methods)
    colours = palette(len(next(iter(models.values())).classes))
    val = source.dataset(source.split_ids("val")[:pool], labeled=True)
    samples = [val[i] for i in range(len(val))]
    with torch.no_grad():
        predictions = np.stack(
            [
                np.stack([model.logits(s["image"][None].float() / 255).argmax(1)[0].numpy() for s in samples])
                for model in models.values()
            ]
        )
    judges = [i for i, m in enumerate(methods) if disputed_by is None or m in disputed_by]
    for row, index in enumerate(most_disputed(predictions[judges], scenes), start=1):
        sample = samples[index]
        mask = sample["mask"].numpy()
        panels = [(f"val scene {index}", sample["image"].permute(1, 2, 0).numpy()), ("ground truth", colours[mask])]
        for method, prediction in zip(models, predictions[:, index]):
            accuracy = digit_accuracy(prediction, mask)
            panels.append((f"{method} student\ndigit pixels right: {accuracy:.0%}", colours[prediction]))
        for col, (title, picture) in enumerate(panels):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(picture, interpolation="nearest")
            ax.set_axis_off()
            ax.set_title(title, fontsize=8)
    judged = ", ".join(methods[i] for i in judges)
    fig.suptitle(
        f"predictions on the {scenes} of the first {len(samples)} val scenes where {judged} disagree most "
        "(chosen from their predictions alone, not the ground truth)",
        y=0.995,
        fontsize=10,
    )
    fig.tight_layout()
    path = out / "demo.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def coupling_figure(runs: dict[str, Path], path: Path) -> Path:
    """Three panels for a set of runs: val mIoU, argmax disagreement and parameter distance."""
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.5))
    plot_miou(axes[0], runs)
    plot_coupling(axes[1], runs, "disagreement")
    plot_coupling(axes[2], runs, "param_distance")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def mean_curve(curves: Sequence[Sequence[Sequence[float]]]) -> list[tuple[float, float]]:
    """The seed-mean of ``curves`` ([[training seconds, mIoU], ...] each, seconds increasing).

    Curves with the same number of evaluations (runs of equal length evaluate at the same
    iterations) are averaged point by point, times and mIoU alike, so the mean ends at the seeds'
    mean final. Otherwise (an equal wall-clock budget gives each seed its own length) every curve
    is interpolated linearly on training time at each evaluation time of any curve, from the
    latest first evaluation to the earliest last one, so runs are compared at equal seconds.
    Raises ValueError for a run without evaluations.
    """
    if any(len(c) == 0 for c in curves):
        raise ValueError("mean_curve: a run has no evaluation")
    arrays = [np.asarray(c, dtype=float).reshape(-1, 2) for c in curves]
    if len({len(a) for a in arrays}) == 1:
        return [(float(t), float(m)) for t, m in np.mean(arrays, axis=0)]
    start, end = max(a[0, 0] for a in arrays), min(a[-1, 0] for a in arrays)
    times = np.unique(np.concatenate([a[:, 0] for a in arrays]))
    times = times[(times >= start) & (times <= end)]
    if times.size == 0:
        times = np.array([end])
    means = np.mean([np.interp(times, a[:, 0], a[:, 1]) for a in arrays], axis=0)
    return [(float(t), float(m)) for t, m in zip(times, means)]


def miou_vs_time_figure(
    runs: Sequence[dict], fractions: Sequence[str], variants: Sequence[str], upper_bound: float | None, path: Path
) -> Path:
    """Student val mIoU against training time, one panel per labelled fraction.

    ``runs`` are per-run summaries (``variant``, ``fraction``, ``budget``, ``curve``: [[seconds,
    mIoU], ...], ``train_seconds``, ``student_miou``). Equal-iteration runs are solid lines (mean
    over seeds per evaluation), equal-wall-clock runs dashed lines ending in a star at their mean
    final; ``upper_bound`` (mean mIoU with every train image labelled) is a dotted line.
    """
    fig, axes = plt.subplots(1, len(fractions), figsize=(6 * len(fractions), 4.5), squeeze=False)
    for ax, fraction in zip(axes[0], fractions):
        for variant in variants:
            mine = [r for r in runs if r["variant"] == variant and r["fraction"] == fraction]
            equal_its = [r["curve"] for r in mine if r["budget"] == "iterations"]
            if not equal_its:
                continue
            line = ax.plot(
                *zip(*mean_curve(equal_its)), marker="o", ms=3, label=f"{variant} (seeds: {len(equal_its)})"
            )[0]
            timed = [r for r in mine if r["budget"] == "time"]
            if timed:
                ax.plot(*zip(*mean_curve([r["curve"] for r in timed])), "--", lw=1, color=line.get_color())
                ax.plot(
                    np.mean([r["train_seconds"] for r in timed]),
                    np.mean([r["student_miou"] for r in timed]),
                    "*",
                    ms=13,
                    color=line.get_color(),
                    markeredgecolor="black",
                )
        if upper_bound is not None:
            ax.axhline(upper_bound, color="black", ls=":", lw=1, label="supervised, all labelled")
        ax.set_title(f"{fraction} labelled: solid equal iterations, dashed/star equal wall-clock", fontsize=10)
        ax.set_xlabel("training wall-clock (s, evaluation excluded)")
        ax.set_ylabel("student val mIoU")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _train_records(run_dir: Path) -> list[dict]:
    return [r for r in read_log(run_dir) if r.get("type", "train") == "train"]


def plot_train_curve(ax: plt.Axes, run_dir: Path, keys: Sequence[str], title: str, log_scale: bool = False) -> None:
    """Training-log fields over iterations, one line per key present in the log."""
    recs = _train_records(run_dir)
    for key in keys:
        points = [(r["iteration"], r[key]) for r in recs if key in r]
        if points:
            ax.plot(*zip(*points), label=key)
    ax.set_xlabel("iteration")
    ax.set_title(title)
    if log_scale and ax.lines:
        ax.set_yscale("log")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def report_figure(run_dir: Path, path: Path) -> Path:
    """One PNG with every curve of a run: losses, learning rate, share of confident pseudo-labels,
    val mIoU of each network, and teacher-student disagreement and parameter distance."""
    run_dir = Path(run_dir)
    losses = sorted({k for r in _train_records(run_dir) for k in r if k.startswith("loss")})
    fig, axes = plt.subplots(2, 3, figsize=(18, 9))
    plot_train_curve(axes[0, 0], run_dir, losses, "training losses (mean over each log window)")
    plot_train_curve(axes[0, 1], run_dir, ["lr"], "learning rate (base group)")
    plot_train_curve(axes[0, 2], run_dir, ["confident"], "share of unlabelled pixels above the threshold")
    runs = {run_dir.name: run_dir}
    plot_miou(axes[1, 0], runs)
    plot_coupling(axes[1, 1], runs, "disagreement")
    plot_coupling(axes[1, 2], runs, "param_distance")
    for ax in axes.flat:
        if not ax.lines:
            ax.text(0.5, 0.5, "not in this run's log", ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.suptitle(str(run_dir))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


PICTURE_IMAGES = 4


def pseudo_label_grid(
    images: Sequence[np.ndarray],
    pseudo: Sequence[np.ndarray],
    conf: Sequence[np.ndarray],
    student: Sequence[np.ndarray],
    threshold: float,
    colours: np.ndarray,
    title: str,
) -> np.ndarray:
    """An ``[H, W, 3]`` uint8 picture, one row per image: the image, the teacher's pseudo-label,
    its confident pixels (white: confidence >= ``threshold``) and the student's prediction."""
    rows = len(images)
    fig, axes = plt.subplots(rows, 4, figsize=(8, 2.1 * rows + 0.5), squeeze=False)
    for row in range(rows):
        confident = conf[row] >= threshold
        panels = [
            ("image", images[row]),
            ("teacher pseudo-label", colorize(pseudo[row], colours)),
            (f"confidence >= {threshold:g}", np.repeat(confident[:, :, None], 3, axis=2).astype(np.uint8) * 255),
            ("student prediction", colorize(student[row], colours)),
        ]
        for col, (name, picture) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=8)
        axes[row, 2].set_xlabel(f"{confident.mean():.0%} confident", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    picture = np.asarray(cast("FigureCanvasAgg", fig.canvas).buffer_rgba())[..., :3].copy()  # the Agg backend
    plt.close(fig)
    return picture


@torch.no_grad()
def teacher_picture(
    student: nn.Module,
    teacher: nn.Module,
    teacher_name: str,
    probe: Sequence[Tensor],
    mean: Sequence[float],
    std: Sequence[float],
    threshold: float,
    iteration: int,
) -> np.ndarray:
    """:func:`pseudo_label_grid` for probe images, float ``[1, 3, H, W]`` in [0, 1]; the networks
    (in eval mode) see them normalised with ``mean`` and ``std``."""
    images, pseudo, conf, pred = [], [], [], []
    for image in probe:
        x = normalize(image, mean, std)
        probs = teacher(x).float().softmax(1)[0]
        confidence, label = probs.max(0)
        images.append(image[0].mul(255).round().byte().permute(1, 2, 0).cpu().numpy())
        pseudo.append(label.cpu().numpy())
        conf.append(confidence.cpu().numpy())
        pred.append(student(x)[0].argmax(0).cpu().numpy())
    title = f"iteration {iteration}: pseudo-labels of {teacher_name} (on shift) and the student"
    return pseudo_label_grid(images, pseudo, conf, pred, threshold, palette(256), title)
