"""Dual Teacher: switching temporary teachers (Na et al., NeurIPS 2023).

Per iteration, with teacher k on shift (k = (epoch // period) mod K):
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
     ``restart_per_shift`` its momentum counter restarts at each shift, so it starts the
     shift as a copy of the student (the official code's behaviour).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dualteacher.semi.augment import strong_photometric
from dualteacher.config import ConfigError, MethodConfig
from dualteacher.semi.losses import pseudo_label_loss, supervised_ce
from dualteacher.semi.teachers import TeacherPool
from dualteacher.methods.base import Batch, Method, MethodContext, confident_fraction, make_teacher, mix, pseudo_label


class DualTeacher(Method):
    """Student + K temporary teachers taking turns."""

    @classmethod
    def check_config(cls, cfg: MethodConfig) -> None:
        """``method.mixings``: one per teacher or a single one for all (raises ConfigError)."""
        if len(cfg.mixings) not in (1, cfg.num_teachers):
            raise ConfigError(f"method.mixings: give one mixing per teacher ({cfg.num_teachers}) or a single one for all")

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        c = self.cfg
        self.pool = TeacherPool(
            [make_teacher(ctx, self.student) for _ in range(c.num_teachers)],
            period=c.shift_period,
            restart_per_shift=c.restart_per_shift,
            momentum=c.ema_momentum,
            warmup=c.ema_warmup,
            ema_buffers=c.ema_buffers,
        )
        self.mixings = list(c.mixings) * (c.num_teachers if len(c.mixings) == 1 else 1)
        self.epoch = 0

    def teachers(self) -> dict[str, nn.Module]:
        return {f"teacher{i + 1}": t for i, t in enumerate(self.pool.modules())}

    def active_teacher(self) -> str:
        return f"teacher{self.pool.active_index(self.epoch) + 1}"

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.pool.start_epoch(epoch)

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        assert unlabeled is not None and unlabeled.valid is not None
        c = self.cfg
        k = self.pool.active_index(self.epoch)
        conf, pseudo = pseudo_label(self.pool.active, self.norm(unlabeled.image))
        strong = strong_photometric(unlabeled.image, gen, self.strong)
        mixed = mix(self.mixings[k], strong, pseudo, conf, unlabeled.valid, gen, num_classes=self.ctx.num_classes, cutmix_p=c.cutmix_p)

        n, m = labeled.image.shape[0], strong.shape[0]
        views = [labeled.image, mixed.image] + ([strong] if c.icl_weight > 0 else [])
        logits = self.net(self.norm(torch.cat(views)))
        loss_sup = supervised_ce(logits[:n], labeled.mask)
        loss_mix = pseudo_label_loss(logits[n : n + m], mixed.label, mixed.conf, mixed.valid, c.threshold, c.threshold_mode)
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
        return {"pool": self.pool.state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.pool.load_state_dict(state["pool"])
        self.epoch = state["epoch"]
