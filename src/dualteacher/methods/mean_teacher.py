"""Mean Teacher for segmentation, with the same views, mixing and losses as Dual Teacher.

One EMA teacher, persistent over the whole run, makes pseudo-labels on the weak view; the
student learns them on the strongly augmented, mixed view (the first mixing of
``method.mixings``). This is the coupled student-teacher baseline the Dual Teacher paper
argues against, kept as fair as possible: only the teacher switching and the consistency
term on the un-mixed strong view are missing. After the teacher's pseudo-labels, the step is
:meth:`Method.learn_mixed_strong`, the same as FixMatch's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dualteacher.semi.teachers import TeacherPool
from dualteacher.methods.base import Batch, Method, MethodContext, make_teacher, pseudo_label


class MeanTeacher(Method):
    """Student + one persistent EMA teacher."""

    recipe_settings = ("method.mixings=[cutmix]", "method.student_drop_path=0.0")

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        c = self.cfg
        self.pool = TeacherPool(
            [make_teacher(ctx, self.student)],
            period=1,
            restart_per_shift=False,
            momentum=c.ema_momentum,
            warmup=c.ema_warmup,
            ema_buffers=c.ema_buffers,
        )

    def teachers(self) -> dict[str, nn.Module]:
        return {"teacher": self.pool.modules()[0]}

    def active_teacher(self) -> str:
        return "teacher"

    def start_epoch(self, epoch: int) -> None:
        self.pool.start_epoch(epoch)

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        assert unlabeled is not None and unlabeled.valid is not None
        conf, pseudo = pseudo_label(self.pool.active, self.norm(unlabeled.image))
        return self.learn_mixed_strong(labeled, unlabeled, conf, pseudo, gen)

    def after_optimizer_step(self) -> None:
        self.pool.update(self.student)

    def state_dict(self) -> dict:
        return {"pool": self.pool.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.pool.load_state_dict(state["pool"])
