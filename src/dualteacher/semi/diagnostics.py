"""Student-teacher coupling, measured: the paper's central claim made observable.

For every teacher: the relative parameter distance to the student, and on a fixed probe set
of unlabelled images the rate at which their argmax predictions disagree and the mean
KL(teacher || student) per pixel. A tightly coupled teacher (distance and disagreement near 0)
can only confirm the student's own mistakes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def relative_distance(teacher: nn.Module, student: nn.Module) -> float:
    """``||θt − θs|| / ||θs||`` over all parameters."""
    diff = 0.0
    norm = 0.0
    for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True):
        diff += float((pt.float() - ps.float()).pow(2).sum())
        norm += float(ps.float().pow(2).sum())
    return (diff / max(norm, 1e-30)) ** 0.5


@torch.no_grad()
def prediction_coupling(
    teacher: Callable[[Tensor], Tensor], student: Callable[[Tensor], Tensor], probe: Sequence[Tensor]
) -> tuple[float, float]:
    """(argmax disagreement rate, mean per-pixel KL(teacher || student)) over the probe images."""
    disagree = 0.0
    kl = 0.0
    pixels = 0
    for image in probe:
        lt = teacher(image).float().log_softmax(1)
        ls = student(image).float().log_softmax(1)
        disagree += float((lt.argmax(1) != ls.argmax(1)).sum())
        kl += float(F.kl_div(ls, lt, log_target=True, reduction="sum"))
        pixels += lt.shape[0] * lt.shape[2] * lt.shape[3]
    return disagree / max(pixels, 1), kl / max(pixels, 1)


def coupling_metrics(student: nn.Module, teachers: dict[str, nn.Module], probe: Sequence[Tensor]) -> dict[str, float]:
    """All coupling numbers, keyed ``coupling/<teacher>/<metric>``; probe images normalised."""
    out: dict[str, float] = {}
    for name, teacher in teachers.items():
        out[f"coupling/{name}/param_distance"] = relative_distance(teacher, student)
        if probe:
            disagreement, kl = prediction_coupling(teacher, student, probe)
            out[f"coupling/{name}/disagreement"] = disagreement
            out[f"coupling/{name}/kl"] = kl
    return out
