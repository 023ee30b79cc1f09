"""Dual Teacher's step on its own: the teacher on shift alone is updated, each teacher mixes its
own way, the consistency term reads the un-mixed strong view, shifts follow ``method.shift``
across epochs and a resume, and a restarted teacher is a copy of the student after its shift's
first update (what the published method does)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import torch

import dualteacher.methods.dual_teacher as dual_teacher_module
from dualteacher.config import ConfigError, load_config
from dualteacher.methods import MethodContext
from dualteacher.methods.dual_teacher import DualTeacher, DualTeacherSettings

from method_contract import network_states, tiny_batches, tiny_network

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def build(labeled_pass: int = 2, **settings: Any) -> DualTeacher:
    """Dual Teacher on the contract's tiny network, every pixel confident, no drop-path."""
    cfg = DualTeacherSettings(name="dual_teacher", threshold=0.0, student_drop_path=0.0, **settings)
    torch.manual_seed(0)
    method = DualTeacher(
        MethodContext(cfg=cfg, build=tiny_network, num_classes=3, mean=MEAN, std=STD, labeled_pass=labeled_pass)
    )
    method.train()
    return method


def train(method: DualTeacher, iterations: range, iters_per_epoch: int = 4) -> list[float]:
    """Drive ``method`` as the engine does for ``iterations``; return each iteration's loss."""
    optimizer = torch.optim.SGD(method.student.parameters(), lr=0.05)
    labeled, unlabeled = tiny_batches()
    losses = []
    for iteration in iterations:
        method.begin_step(iteration, iteration // iters_per_epoch)
        optimizer.zero_grad()
        loss, _ = method.step(labeled, unlabeled, torch.Generator().manual_seed(iteration))
        loss.backward()
        optimizer.step()
        method.after_optimizer_step()
        losses.append(loss.item())
    return losses


def test_only_the_teacher_on_shift_receives_the_ema_update() -> None:
    method = build(labeled_pass=2)
    train(method, range(2))  # shift 0: teacher1
    before = network_states(method)
    train(method, range(2, 3))  # shift 1: teacher2
    after = network_states(method)
    changed = {key.split("/")[0] for key in before if not torch.equal(before[key], after[key])}
    assert changed == {"student", "teacher2"}
    assert method.active_teacher() == "teacher2"


def test_each_teacher_mixes_its_own_way(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[tuple[str, str]] = []
    original = dual_teacher_module.mix

    def recording_mix(kind: str, *args: Any, **kwargs: Any):
        used.append((method.active_teacher(), kind))
        return original(kind, *args, **kwargs)

    monkeypatch.setattr(dual_teacher_module, "mix", recording_mix)
    method = build(labeled_pass=1)
    train(method, range(4))
    assert used == [("teacher1", "cutmix"), ("teacher2", "classmix")] * 2


@pytest.mark.parametrize("icl_weight", [0.2, 0.0])
def test_the_consistency_term_reads_the_unmixed_strong_view_only_when_weighted(
    monkeypatch: pytest.MonkeyPatch, icl_weight: float
) -> None:
    seen: dict[str, torch.Tensor] = {}
    strong_photometric, mix = dual_teacher_module.strong_photometric, dual_teacher_module.mix

    def record_strong(*args: Any, **kwargs: Any) -> torch.Tensor:
        seen["strong"] = strong_photometric(*args, **kwargs)
        return seen["strong"]

    def record_mix(*args: Any, **kwargs: Any):
        view = mix(*args, **kwargs)
        seen["mixed"] = view.image
        return view

    monkeypatch.setattr(dual_teacher_module, "strong_photometric", record_strong)
    monkeypatch.setattr(dual_teacher_module, "mix", record_mix)
    method = build(icl_weight=icl_weight)
    method.begin_step(0, 0)
    method.student.register_forward_pre_hook(lambda _m, args: seen.__setitem__("input", args[0]))
    labeled, unlabeled = tiny_batches()
    _, parts = method.step(labeled, unlabeled, torch.Generator().manual_seed(3))
    n, m = labeled.image.shape[0], unlabeled.image.shape[0]
    views = [labeled.image, seen["mixed"]] + ([seen["strong"]] if icl_weight > 0 else [])
    assert torch.equal(seen["input"], method.norm(torch.cat(views)))
    assert seen["input"].shape[0] == n + m * (2 if icl_weight > 0 else 1)
    assert not torch.equal(seen["mixed"], seen["strong"])  # the ICL view is not the mixed one
    assert (parts["loss_icl"] > 0) == (icl_weight > 0)


@pytest.mark.parametrize(
    ("shift", "labeled_pass", "expected"),
    [
        ("labeled_pass", 3, [1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2]),
        (5, 3, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 1, 1]),
        ("epoch", 3, [1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1]),  # epochs of 4 iterations
    ],
)
def test_shifts_follow_the_method_setting_not_the_evaluation_cadence(
    shift: str | int, labeled_pass: int, expected: list[int]
) -> None:
    method = build(labeled_pass=labeled_pass, shift=shift)
    turns = []
    for iteration in range(12):
        method.begin_step(iteration, iteration // 4)
        turns.append(int(method.active_teacher().removeprefix("teacher")))
    assert turns == expected


def test_a_resumed_run_takes_the_same_turns_and_keeps_the_shifts_counter() -> None:
    method = build(labeled_pass=3)
    train(method, range(4))  # stops inside shift 1, one update into it
    state = json.loads(json.dumps(method.state_dict()))
    resumed = build(labeled_pass=3)
    for role, net in resumed.modules().items():
        net.load_state_dict(method.modules()[role].state_dict())
    resumed.load_state_dict(state)
    assert train(resumed, range(4, 9)) == train(method, range(4, 9))
    assert resumed.pool.counters == method.pool.counters == (3, 3)  # teacher1 restarted at 6: three updates since
    a, b = network_states(resumed), network_states(method)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_after_a_shifts_first_update_the_teacher_is_the_student_whatever_its_history() -> None:
    method = build(labeled_pass=3)
    for iteration in range(9):
        train(method, range(iteration, iteration + 1))
        if iteration % 3 == 0:  # the first update of a shift
            teacher = method.teachers()[method.active_teacher()]
            assert all(
                torch.equal(t, s) for t, s in zip(teacher.state_dict().values(), method.student.state_dict().values())
            )
        else:
            teacher = method.teachers()[method.active_teacher()]
            assert not all(
                torch.equal(t, s) for t, s in zip(teacher.state_dict().values(), method.student.state_dict().values())
            )


class OneTeacherAlternatingMixing(DualTeacher):
    """K = 1 restarted every shift, with Dual Teacher's mixings taking turns by shift."""

    def __init__(self, ctx: MethodContext) -> None:
        assert isinstance(ctx.cfg, DualTeacherSettings)
        super().__init__(
            dataclasses.replace(ctx, cfg=dataclasses.replace(ctx.cfg, num_teachers=1, mixings=("cutmix",)))
        )

    def begin_step(self, iteration: int, epoch: int) -> None:
        super().begin_step(iteration, epoch)
        self.mixings = [("cutmix", "classmix")[self.shift_index(iteration, epoch) % 2]]


def test_two_restarted_teachers_differ_from_one_only_at_each_shifts_first_iteration() -> None:
    """With the EMA restarted per shift, K = 2 differs from one teacher restarted every shift with
    alternating mixing only in the weights that make a shift's first pseudo-labels (the older
    weights of the teacher coming back on shift): given the same student, the pseudo-labelling
    teachers are equal at every other iteration."""
    two = build(labeled_pass=3)
    one = OneTeacherAlternatingMixing(two.ctx)
    one.pool.modules()[0].load_state_dict(two.pool.modules()[0].state_dict())
    optimizer = torch.optim.SGD(two.student.parameters(), lr=0.05)
    labeled, unlabeled = tiny_batches()
    same = []
    for iteration in range(12):
        for method in (two, one):
            method.begin_step(iteration, 0)
        pair = (two.pool.active.state_dict(), one.pool.active.state_dict())
        same.append(all(torch.equal(a, pair[1][k]) for k, a in pair[0].items()))
        optimizer.zero_grad()
        two.step(labeled, unlabeled, torch.Generator().manual_seed(iteration))[0].backward()
        optimizer.step()
        one.student.load_state_dict(two.student.state_dict())
        two.after_optimizer_step()
        one.after_optimizer_step()
    assert same == [iteration % 3 != 0 or iteration == 0 for iteration in range(12)]


def test_the_shift_setting_is_checked() -> None:
    for value in ("0", "sometimes", "-3"):
        with pytest.raises(ConfigError, match="method.shift: must be labeled_pass or epoch or a number of iterations"):
            load_config(None, ["method.name=dual_teacher", f"method.shift={value}"])
    settings = load_config(None, ["method.name=dual_teacher", "method.shift=150"]).method
    assert isinstance(settings, DualTeacherSettings) and settings.shift == 150
    settings = load_config(None, ["method.name=dual_teacher"]).method
    assert isinstance(settings, DualTeacherSettings) and settings.shift == "labeled_pass"
