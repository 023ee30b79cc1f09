"""Mean Teacher for segmentation (Tarvainen & Valpola, NeurIPS 2017), with the same views,
mixing and losses as Dual Teacher.

One EMA teacher, persistent over the whole run, makes pseudo-labels on the weak view; the
student learns them on the strongly augmented view mixed with the one mixing of ``method.mixings`` (CutMix). This
is the coupled student-teacher baseline the Dual Teacher paper argues against, kept as fair as
possible: only the teacher switching and the consistency term on the un-mixed strong view are
missing. After the teacher's pseudo-labels, the step is
:func:`~dualteacher.methods.common.learn_mixed_strong`, the same as FixMatch's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dualteacher.methods.base import Batch, Method, MethodContext
from dualteacher.methods.common import TeacherSettings, learn_mixed_strong, make_teacher, mixing_check, pseudo_label
from dualteacher.semi.teachers import TeacherPool


@dataclass
class MeanTeacherSettings(TeacherSettings):
    """Mean Teacher's settings: the shared teacher settings and ``mixings``, the one mixing
    it uses (a name of :data:`~dualteacher.registry.MIXINGS`: CutMix, as in UniMatch's code base). The student trains
    at full depth (``student_drop_path`` 0)."""

    mixings: tuple[str, ...] = ("cutmix",)

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            *super().checks(),
            mixing_check("mixings", self.mixings),
            ("mixings", len(self.mixings) == 1, "this method mixes with one mixing, e.g. [cutmix]"),
        ]


class MeanTeacher(Method):
    """Student + one persistent EMA teacher."""

    Settings = MeanTeacherSettings
    cfg: MeanTeacherSettings

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        c = self.cfg
        self.pool = TeacherPool(
            [make_teacher(ctx, self.student, c.teacher_init)],
            restart_per_shift=False,
            momentum=c.ema_momentum,
            warmup=c.ema_warmup,
            ema_buffers=c.ema_buffers,
        )

    def teachers(self) -> dict[str, nn.Module]:
        return {"teacher": self.pool.modules()[0]}

    def active_teacher(self) -> str:
        return "teacher"

    def begin_step(self, iteration: int, epoch: int) -> None:
        self.pool.start_shift(0)  # one teacher, one shift: the whole run

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        assert unlabeled is not None and unlabeled.valid is not None
        conf, pseudo = pseudo_label(self.pool.active, self.norm(unlabeled.image))
        return learn_mixed_strong(self, self.cfg.mixings[0], labeled, unlabeled, conf, pseudo, gen)

    def after_optimizer_step(self) -> None:
        self.pool.update(self.student)

    def state_dict(self) -> dict:
        return {"pool": self.pool.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.pool.load_state_dict(state["pool"])
