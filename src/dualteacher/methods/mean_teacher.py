"""Mean Teacher for segmentation, with the same views, mixing and losses as Dual Teacher.

One EMA teacher, persistent over the whole run, makes pseudo-labels on the weak view; the
student learns them on the strongly augmented, mixed view (the first mixing of
``method.mixings``). This is the coupled student-teacher baseline the Dual Teacher paper
argues against, kept as fair as possible: only the teacher switching and the consistency
term on the un-mixed strong view are missing.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..augment import StrongAugConfig, strong_photometric
from ..losses import pseudo_label_loss, supervised_ce
from ..teachers import TeacherPool
from .base import Batch, Method, MethodContext, confident_fraction, make_teacher, mix, pseudo_label


class MeanTeacher(Method):
    """Student + one persistent EMA teacher."""

    name = "mean_teacher"

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx, student_drop_path=ctx.cfg.student_drop_path)
        c = self.cfg
        self.pool = TeacherPool(
            [make_teacher(ctx, self.student)],
            period=1,
            restart_per_shift=False,
            momentum=c.ema_momentum,
            warmup=c.ema_warmup,
            ema_buffers=c.ema_buffers,
        )
        self.strong = StrongAugConfig()

    def teachers(self) -> dict[str, nn.Module]:
        return {"teacher": self.pool.modules()[0]}

    def active_teacher(self) -> str:
        return "teacher"

    def start_epoch(self, epoch: int) -> None:
        self.pool.start_epoch(epoch)

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        assert unlabeled is not None and unlabeled.valid is not None
        c = self.cfg
        conf, pseudo = pseudo_label(self.pool.active, self.norm(unlabeled.image))
        strong = strong_photometric(unlabeled.image, gen, self.strong)
        mixed = mix(c.mixings[0], strong, pseudo, conf, unlabeled.valid, gen, num_classes=self.ctx.num_classes, cutmix_p=c.cutmix_p)

        n = labeled.image.shape[0]
        logits = self.net(self.norm(torch.cat([labeled.image, mixed.image])))
        loss_sup = supervised_ce(logits[:n], labeled.mask, self.ctx.ignore_index)
        loss_mix = pseudo_label_loss(logits[n:], mixed.label, mixed.conf, mixed.valid, c.threshold, c.threshold_mode)
        loss = loss_sup + c.unsup_weight * loss_mix
        return loss, {
            "loss_sup": loss_sup.detach(),
            "loss_mix": loss_mix.detach(),
            "confident": confident_fraction(conf, unlabeled.valid, c.threshold),
        }

    def after_optimizer_step(self) -> None:
        self.pool.update(self.student)

    def state_dict(self) -> dict:
        return {"pool": self.pool.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.pool.load_state_dict(state["pool"])
