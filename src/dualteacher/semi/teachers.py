"""Exponential moving-average teachers and Dual Teacher's pool of temporary teachers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

__all__ = ["TeacherPool", "ema_momentum", "ema_update"]


def ema_momentum(step: int, base: float = 0.99, warmup: bool = True) -> float:
    """EMA momentum for update number ``step`` (0-based): ``min(1 − 1/(step + 1), base)`` with warm-up.

    With warm-up, step 0 gives 0, so the first update makes the teacher a copy of the student.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return min(1.0 - 1.0 / (step + 1), base) if warmup else base


def _unwrap(module: nn.Module) -> nn.Module:
    """The module inside (Distributed)DataParallel wrappers."""
    while isinstance(module, (DistributedDataParallel, DataParallel)):
        module = module.module
    return module


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float, buffers: bool = True) -> None:
    """In place ``θt ← m·θt + (1 − m)·θs`` for all parameters of ``teacher``.

    Floating-point buffers (BatchNorm running mean/var) are averaged the same way when ``buffers``
    is True and left untouched otherwise (the official code averages parameters only; only sensible
    for models whose norm layers keep no running statistics). Integer buffers (``num_batches_tracked``)
    are copied from the student. ``student`` may be wrapped in (Distributed)DataParallel.
    """
    student = _unwrap(student)
    t_params: list[Tensor] = list(teacher.parameters())
    s_params: list[Tensor] = list(student.parameters())
    t_bufs, s_bufs = list(teacher.buffers()), list(student.buffers())
    if len(t_params) != len(s_params) or len(t_bufs) != len(s_bufs):
        raise ValueError("teacher and student have different parameter/buffer structures")
    weight = 1.0 - momentum
    if t_params:
        torch._foreach_lerp_(t_params, [p.detach() for p in s_params], weight)
    floats_t = [t for t, s in zip(t_bufs, s_bufs) if t.is_floating_point()]
    floats_s = [s for t, s in zip(t_bufs, s_bufs) if t.is_floating_point()]
    if buffers and floats_t:
        torch._foreach_lerp_(floats_t, floats_s, weight)
    for t, s in zip(t_bufs, s_bufs):
        if not t.is_floating_point():
            t.copy_(s)


class TeacherPool:
    """K temporary teachers taking turns ("shifts").

    Shift s is served by teacher ``s % K``; only that teacher makes pseudo-labels and receives EMA
    updates. With ``restart_per_shift`` each shift restarts the active teacher's update counter at
    0 (official Dual Teacher: with warm-up the shift's first update copies the student);
    otherwise every teacher keeps counting its own updates across shifts. K = 1 with one shift
    and ``restart_per_shift`` False is exactly a Mean Teacher. What a shift is (an epoch, a pass
    over the labelled set, a number of iterations) is the caller's: it says when one starts.

    The pool is the one owner of which teacher is on shift. It is deliberately not an
    ``nn.Module``: teachers are never registered under a trained parent, so a parent's ``train()``
    cannot flip them. They are put in eval mode with ``requires_grad`` False and re-put in eval
    mode at every :meth:`start_shift`. Weights are saved by the caller through :meth:`modules`;
    :meth:`state_dict` holds only the schedule state.
    """

    def __init__(
        self,
        teachers: Sequence[nn.Module],
        restart_per_shift: bool = True,
        momentum: float = 0.99,
        warmup: bool = True,
        ema_buffers: bool = True,
    ) -> None:
        if not teachers:
            raise ValueError("a teacher pool needs at least one teacher")
        self._teachers = list(teachers)
        self.restart_per_shift = restart_per_shift
        self.momentum = momentum
        self.warmup = warmup
        self.ema_buffers = ema_buffers
        self._counters = [0] * len(self._teachers)
        self._active = 0
        self._shift: int | None = None
        for teacher in self._teachers:
            teacher.eval()
            teacher.requires_grad_(False)

    def __len__(self) -> int:
        return len(self._teachers)

    def modules(self) -> list[nn.Module]:
        """All teachers, in index order."""
        return list(self._teachers)

    @property
    def counters(self) -> tuple[int, ...]:
        """EMA update counters, one per teacher."""
        return tuple(self._counters)

    @property
    def active_idx(self) -> int:
        """Index of the teacher currently on shift (RuntimeError before the first shift)."""
        self._require_started()
        return self._active

    @property
    def active(self) -> nn.Module:
        """The teacher currently on shift."""
        return self._teachers[self.active_idx]

    def start_shift(self, shift: int) -> int:
        """Put teacher ``shift % K`` on shift ``shift`` (0-based); returns its index.

        On entering a new shift with ``restart_per_shift``, that teacher's counter resets to 0.
        Calling it again with the current shift (every iteration of it, or after a resume)
        changes nothing.
        """
        if shift < 0:
            raise ValueError(f"shift must be >= 0, got {shift}")
        if shift != self._shift:
            self._shift = shift
            self._active = shift % len(self._teachers)
            if self.restart_per_shift:
                self._counters[self._active] = 0
            for teacher in self._teachers:
                teacher.eval()
        return self._active

    def next_momentum(self) -> float:
        """Momentum the next :meth:`update` will use."""
        return ema_momentum(self._counters[self.active_idx], self.momentum, self.warmup)

    def update(self, student: nn.Module) -> float:
        """EMA-update the active teacher from ``student``; returns the momentum used."""
        momentum = self.next_momentum()
        ema_update(self.active, student, momentum, buffers=self.ema_buffers)
        self._counters[self._active] += 1
        return momentum

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable schedule state (teacher weights are not included)."""
        return {
            "num_teachers": len(self._teachers),
            "counters": list(self._counters),
            "active": self._active,
            "shift": self._shift,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the schedule state written by :meth:`state_dict` (ValueError for another K)."""
        if state["num_teachers"] != len(self._teachers):
            raise ValueError(f"pool state is for {state['num_teachers']} teachers, this pool has {len(self._teachers)}")
        self._counters = [int(c) for c in state["counters"]]
        self._active = int(state["active"])
        self._shift = None if state["shift"] is None else int(state["shift"])

    def _require_started(self) -> None:
        if self._shift is None:
            raise RuntimeError("call start_shift() before using the teacher pool")
