"""Tests for EMA updates and the pool of temporary teachers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from dualteacher.semi.teachers import TeacherPool, ema_momentum, ema_update

torch.set_num_threads(1)


def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def _train_step(student: nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
    """One SGD step on random data (also moves the student's BatchNorm running statistics)."""
    gen = torch.Generator().manual_seed(seed)
    student.train()
    x = torch.randn(2, 3, 5, 5, generator=gen)
    loss = student(x).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_momentum_schedule() -> None:
    assert ema_momentum(0) == 0.0
    assert ema_momentum(1) == 0.5
    assert ema_momentum(3) == pytest.approx(0.75)
    assert ema_momentum(99) == pytest.approx(0.99)
    assert ema_momentum(1000) == 0.99
    assert ema_momentum(0, base=0.999, warmup=False) == 0.999
    assert ema_momentum(5000, base=0.999) == 0.999
    with pytest.raises(ValueError):
        ema_momentum(-1)


def test_ema_update_formula_params_and_buffers() -> None:
    teacher, student = _net(0), _net(1)
    student.train()
    student(torch.randn(2, 3, 5, 5))  # non-trivial running stats and num_batches_tracked = 1
    t0, s0 = _state(teacher), _state(student)
    ema_update(teacher, student, 0.9, buffers=True)
    for key, value in teacher.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.9 * t0[key] + 0.1 * s0[key])
        else:
            assert torch.equal(value, s0[key])
    assert int(teacher.state_dict()["1.num_batches_tracked"]) == 1


def test_ema_update_without_buffers_keeps_running_stats() -> None:
    teacher, student = _net(0), _net(1)
    student.train()
    student(torch.randn(2, 3, 5, 5))
    t0, s0 = _state(teacher), _state(student)
    ema_update(teacher, student, 0.9, buffers=False)
    after = teacher.state_dict()
    assert torch.equal(after["1.running_mean"], t0["1.running_mean"])
    assert torch.equal(after["1.running_var"], t0["1.running_var"])
    assert torch.equal(after["1.num_batches_tracked"], s0["1.num_batches_tracked"])
    torch.testing.assert_close(after["1.weight"], 0.9 * t0["1.weight"] + 0.1 * s0["1.weight"])


def test_ema_update_momentum_zero_is_exact_copy() -> None:
    teacher, student = _net(0), _net(1)
    ema_update(teacher, student, 0.0)
    assert _equal(_state(teacher), _state(student))


def test_ema_update_rejects_mismatched_models() -> None:
    with pytest.raises(ValueError):
        ema_update(_net(0), nn.Linear(2, 2), 0.5)


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs gloo")
def test_ema_update_unwraps_ddp(tmp_path: Path) -> None:
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        student = _net(1)
        wrapped = nn.parallel.DistributedDataParallel(student)
        teacher_a, teacher_b = _net(0), _net(0)
        ema_update(teacher_a, wrapped, 0.7)
        ema_update(teacher_b, student, 0.7)
        assert _equal(_state(teacher_a), _state(teacher_b))
    finally:
        if owns_group:
            dist.destroy_process_group()


def test_pool_freezes_teachers_and_they_get_no_gradients() -> None:
    student = _net(1)
    pool = TeacherPool([_net(2), _net(3)])
    pool.start_shift(0)
    for teacher in pool.modules():
        assert not teacher.training
        assert all(not p.requires_grad for p in teacher.parameters())
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        target = pool.active(x).argmax(1)
    loss = nn.functional.cross_entropy(student(x), target)
    loss.backward()
    assert all(p.grad is None for t in pool.modules() for p in t.parameters())
    assert all(p.grad is not None for p in student.parameters())
    pool.modules()[0].train()
    pool.start_shift(1)
    assert not pool.modules()[0].training


def test_pool_requires_a_shift() -> None:
    pool = TeacherPool([_net(0)])
    with pytest.raises(RuntimeError):
        pool.update(_net(1))


@pytest.mark.parametrize(
    ("num", "expected"),
    [
        (2, [0, 1, 0, 1, 0, 1]),
        (3, [0, 1, 2, 0, 1]),
        (1, [0, 0, 0]),
    ],
)
def test_shift_schedule(num: int, expected: list[int]) -> None:
    pool = TeacherPool([_net(i) for i in range(num)])
    assert [pool.start_shift(s) for s in range(len(expected))] == expected
    assert pool.active_idx == expected[-1]
    with pytest.raises(ValueError):
        pool.start_shift(-1)


def test_only_active_teacher_changes_and_restart_copies_student() -> None:
    student = _net(1)
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    pool = TeacherPool([_net(2), _net(3)], restart_per_shift=True)
    step = 0
    for epoch in range(4):
        active = pool.start_shift(epoch)
        other = pool.modules()[1 - active]
        other_before = _state(other)
        for i in range(3):
            _train_step(student, opt, step)
            step += 1
            momentum = pool.update(student)
            assert momentum == ema_momentum(i)
            if i == 0:  # the shift's first update copies the student exactly
                assert _equal(_state(pool.active), _state(student))
            else:
                assert not _equal(_state(pool.active), _state(student))
        assert _equal(_state(other), other_before)  # bitwise untouched
        assert pool.counters[active] == 3


def test_the_same_shift_again_keeps_the_counter() -> None:
    student = _net(1)
    pool = TeacherPool([_net(2), _net(3), _net(4)], restart_per_shift=True)
    pool.start_shift(0)
    pool.update(student)
    pool.update(student)
    pool.start_shift(0)  # same shift (its next iteration): no restart
    assert pool.active_idx == 0 and pool.counters == (2, 0, 0)
    pool.start_shift(1)
    assert pool.active_idx == 1 and pool.counters == (2, 0, 0)
    pool.update(student)
    pool.start_shift(3)  # back to teacher 0: restarted
    assert pool.active_idx == 0 and pool.counters == (0, 1, 0)


def test_persistent_counters_across_shifts() -> None:
    student = _net(1)
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    pool = TeacherPool([_net(2), _net(3)], restart_per_shift=False)
    momenta = []
    for epoch in range(4):
        pool.start_shift(epoch)
        for _ in range(2):
            _train_step(student, opt, epoch)
            momenta.append(pool.update(student))
    assert pool.counters == (4, 4)
    # teacher 0 serves epochs 0 and 2: its counter continues 0, 1 -> 2, 3
    assert momenta == [ema_momentum(i) for i in (0, 1, 0, 1, 2, 3, 2, 3)]
    assert not _equal(_state(pool.modules()[0]), _state(student))


def test_state_dict_round_trip_is_json_and_resumes() -> None:
    student = _net(1)
    pool = TeacherPool([_net(2), _net(3)])
    for epoch in range(3):
        pool.start_shift(epoch // 2)  # shifts of two epochs
        for _ in range(epoch + 1):
            pool.update(student)
    state = json.loads(json.dumps(pool.state_dict()))
    clone = TeacherPool([copy.deepcopy(t) for t in pool.modules()])
    clone.load_state_dict(state)
    assert clone.state_dict() == pool.state_dict()
    clone.start_shift(1)  # same shift as epoch 2: must not restart after a resume
    pool.start_shift(1)
    assert clone.counters == pool.counters == (3, 3)
    assert clone.next_momentum() == pool.next_momentum() == ema_momentum(3)
    with pytest.raises(ValueError):
        TeacherPool([_net(2), _net(3), _net(4)]).load_state_dict(state)


def test_single_persistent_teacher_is_mean_teacher() -> None:
    student = _net(1)
    opt = torch.optim.SGD(student.parameters(), lr=0.1)
    pool = TeacherPool([_net(5)], restart_per_shift=False, momentum=0.9)
    plain = _net(5)
    plain.requires_grad_(False)
    step = 0
    for _ in range(3):
        pool.start_shift(0)
        for _ in range(4):
            _train_step(student, opt, step)
            pool.update(student)
            ema_update(plain, student, ema_momentum(step, 0.9))
            step += 1
    assert pool.counters == (12,)
    assert _equal(_state(pool.modules()[0]), _state(plain))
