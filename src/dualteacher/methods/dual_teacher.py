"""Dual Teacher: switching temporary teachers (Na et al., NeurIPS 2023).

Per iteration, with teacher k on shift (k = shift index mod K, a shift lasting ``method.shift``):
  1. teacher k, full depth, eval mode, no gradients: confidences and pseudo-labels on the weak view;
  2. strong photometric view of the unlabelled batch, per image;
  3. the mixing paired with teacher k (default CutMix for teacher 1, ClassMix for teacher 2)
     applied to images, pseudo-labels, confidences and valid pixels alike;
  4. one student pass (with stochastic depth) on [labelled, mixed, strong un-mixed]
     (the last view is skipped when the ICL weight is 0):
     L = CE(labelled) + w_u * L_mix + w_icl * L_icl, the last being the implicit consistency
     term between teacher k's pseudo-labels and the student on the un-mixed strong view.
     ``method.threshold_mode`` applies to L_mix only (the official code weights it by the
     share of confident pixels, ``fraction``); L_icl is always thresholded per pixel, CE on
     the pixels whose confidence reaches the threshold divided by the valid pixels, as the
     method defines the ICL term;
  5. after the optimiser step only teacher k receives the EMA of the student; with
     ``restart_per_shift`` its momentum counter restarts at each shift, so its first update of
     the shift makes it a copy of the student (the official code's behaviour): its weights from
     earlier shifts only make the pseudo-labels of the shift's first iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dualteacher.methods.base import Batch, Method, MethodContext
from dualteacher.methods.common import (
    TeacherSettings,
    confident_fraction,
    make_teacher,
    mix,
    mixing_check,
    pseudo_label,
)
from dualteacher.semi.losses import pseudo_label_loss, supervised_ce
from dualteacher.semi.photometric import strong_photometric
from dualteacher.semi.teachers import TeacherPool

SHIFT_UNITS = ("labeled_pass", "epoch")
"""``method.shift`` values that are not a number of iterations."""


@dataclass
class DualTeacherSettings(TeacherSettings):
    """Dual Teacher's settings, with the paper's and official code's defaults.

    ``num_teachers``: K temporary teachers (2); ``mixings``: one mixing per teacher, or one for all
    (CutMix for teacher 1, ClassMix for teacher 2); ``icl_weight``: weight of the implicit
    consistency loss (0.2; 0 drops the un-mixed strong view); ``student_drop_path``: the
    student's stochastic depth (0.1); ``shift``: how long a teacher stays on shift:
    ``labeled_pass`` (one pass over the labelled split, the official code's epoch),
    ``epoch`` (one training epoch, ``train.iters_per_epoch``; what every result before
    dualteacher 0.2 used) or a number of iterations; ``restart_per_shift``: the EMA counter of
    the teacher on shift restarts at each shift (official) or keeps counting (persistent).
    """

    student_drop_path: float = 0.1
    num_teachers: int = 2
    mixings: tuple[str, ...] = ("cutmix", "classmix")
    icl_weight: float = 0.2
    shift: int | str = "labeled_pass"
    restart_per_shift: bool = True

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            *super().checks(),
            ("num_teachers", self.num_teachers >= 1, "must be >= 1"),
            mixing_check("mixings", self.mixings),
            (
                "mixings",
                len(self.mixings) in (1, self.num_teachers),
                f"give one mixing per teacher ({self.num_teachers}) or a single one for all",
            ),
            ("icl_weight", self.icl_weight >= 0, "must be >= 0"),
            (
                "shift",
                self.shift in SHIFT_UNITS or (isinstance(self.shift, int) and self.shift >= 1),
                f"must be {' or '.join(SHIFT_UNITS)} or a number of iterations >= 1",
            ),
        ]


class DualTeacher(Method):
    """Student + K temporary teachers taking turns."""

    Settings = DualTeacherSettings
    cfg: DualTeacherSettings
    recipe_settings = ("method.shift=50",)
    """The built-in recipe's shifts: 50 iterations, its epoch, which every committed benchmark
    result used (when a shift was one epoch by construction)."""

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        c = self.cfg
        self.pool = TeacherPool(
            [make_teacher(ctx, self.student, c.teacher_init) for _ in range(c.num_teachers)],
            restart_per_shift=c.restart_per_shift,
            momentum=c.ema_momentum,
            warmup=c.ema_warmup,
            ema_buffers=c.ema_buffers,
        )
        self.mixings = list(c.mixings) * (c.num_teachers if len(c.mixings) == 1 else 1)

    def teachers(self) -> dict[str, nn.Module]:
        return {f"teacher{i + 1}": t for i, t in enumerate(self.pool.modules())}

    def active_teacher(self) -> str:
        return f"teacher{self.pool.active_idx + 1}"

    def shift_index(self, iteration: int, epoch: int) -> int:
        """The shift (0-based) that ``iteration`` (of ``epoch``) lies in, by ``method.shift``."""
        shift = self.cfg.shift
        if shift == "epoch":
            return epoch
        length = self.ctx.labeled_pass if shift == "labeled_pass" else int(shift)
        return iteration // length

    def begin_step(self, iteration: int, epoch: int) -> None:
        self.pool.start_shift(self.shift_index(iteration, epoch))

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        assert labeled.mask is not None and unlabeled is not None and unlabeled.valid is not None
        c = self.cfg
        conf, pseudo = pseudo_label(self.pool.active, self.norm(unlabeled.image))
        strong = strong_photometric(unlabeled.image, gen, self.strong)
        mixed = mix(
            self.mixings[self.pool.active_idx],
            strong,
            pseudo,
            conf,
            unlabeled.valid,
            gen,
            num_classes=self.ctx.num_classes,
            cutmix_p=c.cutmix_p,
        )

        n, m = labeled.image.shape[0], strong.shape[0]
        views = [labeled.image, mixed.image] + ([strong] if c.icl_weight > 0 else [])
        logits = self.net(self.norm(torch.cat(views)))
        loss_sup = supervised_ce(logits[:n], labeled.mask)
        loss_mix = pseudo_label_loss(
            logits[n : n + m], mixed.label, mixed.conf, mixed.valid, c.threshold, c.threshold_mode
        )
        loss = loss_sup + c.unsup_weight * loss_mix
        loss_icl = torch.zeros((), device=loss.device)
        if c.icl_weight > 0:
            # per pixel whatever method.threshold_mode says: the ICL term is defined so (see above)
            loss_icl = pseudo_label_loss(logits[n + m :], pseudo, conf, unlabeled.valid, c.threshold, "pixel")
            loss = loss + c.icl_weight * loss_icl
        return loss, {
            "loss_sup": loss_sup.detach(),
            "loss_mix": loss_mix.detach(),
            "loss_icl": loss_icl.detach(),
            "confident": confident_fraction(conf, unlabeled.valid, c.threshold),
        }

    def after_optimizer_step(self) -> None:
        self.pool.update(self.student)

    def state_dict(self) -> dict:
        return {"pool": self.pool.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.pool.load_state_dict(state["pool"])
