"""Coupling diagnostics on hand-built models."""

import math

import torch
from torch import nn

from dualteacher.semi.diagnostics import coupling_metrics, prediction_coupling, relative_distance


class Fixed(nn.Module):
    """Logits that do not depend on the input: a learnable [C] bias broadcast over pixels."""

    def __init__(self, bias: list[float]) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        return self.bias.view(1, -1, 1, 1).expand(b, -1, h, w)


def test_relative_distance_by_hand() -> None:
    assert relative_distance(Fixed([3.0, 4.0]), Fixed([3.0, 4.0])) == 0.0
    assert math.isclose(relative_distance(Fixed([3.0, 0.0]), Fixed([3.0, 4.0])), 4.0 / 5.0)


def test_disagreement_and_kl_by_hand() -> None:
    probe = [torch.zeros(1, 3, 2, 2), torch.zeros(2, 3, 1, 3)]
    teacher, student = Fixed([math.log(0.75), math.log(0.25)]), Fixed([math.log(0.25), math.log(0.75)])
    disagreement, kl = prediction_coupling(teacher, student, probe)
    assert disagreement == 1.0
    expected = 0.75 * math.log(0.75 / 0.25) + 0.25 * math.log(0.25 / 0.75)
    assert math.isclose(kl, expected, rel_tol=1e-5)
    same = prediction_coupling(student, student, probe)
    assert same == (0.0, 0.0)


def test_coupling_metrics_names_every_teacher() -> None:
    student = Fixed([0.0, 1.0])
    out = coupling_metrics(
        student, {"teacher1": Fixed([0.0, 1.0]), "teacher2": Fixed([1.0, 0.0])}, [torch.zeros(1, 3, 2, 2)]
    )
    assert out["coupling/teacher1/param_distance"] == 0.0 and out["coupling/teacher1/disagreement"] == 0.0
    assert out["coupling/teacher2/disagreement"] == 1.0 and out["coupling/teacher2/kl"] > 0
