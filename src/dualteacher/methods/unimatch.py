"""UniMatch (Yang et al., CVPR 2023): FixMatch with dual strong views and a feature-perturbation stream.

One network, no teacher. Per iteration:
  1. one pass over [labelled, weak unlabelled] whose encoder features are decoded twice: as they
     are (labelled logits, and the weak-view predictions whose detached argmax and confidence
     are the pseudo-labels) and, for the weak images only, after channel dropout
     (``method.fp_dropout``, 0.5) on every feature map: the feature-perturbation (FP) stream;
  2. two strong photometric views of the unlabelled batch, drawn independently, each mixed with
     its own CutMix (own partners and boxes) together with the pseudo-labels;
  3. one pass over both strong views;
  4. L = CE(labelled) + w_u * (0.5 * L_fp + 0.25 * L_s1 + 0.25 * L_s2), every unlabelled term a
     per-pixel CE against the pseudo-labels on pixels with confidence >= 0.95.
The reference code halves the whole sum, which only rescales the learning rate; and it labels
the mixing partners with an extra eval-mode pass over a second unlabelled batch, where this
implementation mixes within the batch and reuses the pseudo-labels it already has (as the other
methods here do).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dualteacher.methods.base import Batch, Method
from dualteacher.methods.common import PseudoLabelSettings, confidence_and_label, confident_fraction, mix, mixing_check
from dualteacher.semi.features import channel_dropout
from dualteacher.semi.losses import pseudo_label_loss, supervised_ce
from dualteacher.semi.photometric import strong_photometric

FP_SHARE = 0.5
"""Share of the unlabelled loss taken by the feature-perturbation stream."""
STRONG_SHARE = 0.25
"""Share of the unlabelled loss taken by each of the two strong views."""


@dataclass
class UniMatchSettings(PseudoLabelSettings):
    """UniMatch's settings: the shared pseudo-label settings, ``mixings``, the one mixing of both
    strong views (CutMix), and ``fp_dropout``, the channel-dropout rate of the feature-perturbation stream (0.5)."""

    mixings: tuple[str, ...] = ("cutmix",)
    fp_dropout: float = 0.5

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            *super().checks(),
            mixing_check("mixings", self.mixings),
            ("mixings", len(self.mixings) == 1, "this method mixes with one mixing, e.g. [cutmix]"),
            ("fp_dropout", 0.0 <= self.fp_dropout < 1.0, "must be in [0, 1)"),
        ]


class UniMatch(Method):
    """A single network, three perturbed streams: FP, strong view 1, strong view 2."""

    Settings = UniMatchSettings
    cfg: UniMatchSettings

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        assert labeled.mask is not None and unlabeled is not None and unlabeled.valid is not None
        c = self.cfg
        n, valid = labeled.image.shape[0], unlabeled.valid

        def perturb(features: list[Tensor]) -> list[Tensor]:
            return channel_dropout([f[n:] for f in features], c.fp_dropout, gen)

        logits, logits_fp = self.net(self.norm(torch.cat([labeled.image, unlabeled.image])), perturb=perturb)
        conf, pseudo = confidence_and_label(logits[n:].detach())

        views = [
            mix(
                c.mixings[0],
                strong_photometric(unlabeled.image, gen, self.strong),
                pseudo,
                conf,
                valid,
                gen,
                num_classes=self.ctx.num_classes,
                cutmix_p=c.cutmix_p,
            )
            for _ in range(2)
        ]
        logits_s1, logits_s2 = self.net(self.norm(torch.cat([v.image for v in views]))).chunk(2)

        loss_sup = supervised_ce(logits[:n], labeled.mask)
        loss_fp = pseudo_label_loss(logits_fp, pseudo, conf, valid, c.threshold, c.threshold_mode)
        loss_s1, loss_s2 = (
            pseudo_label_loss(out, v.label, v.conf, v.valid, c.threshold, c.threshold_mode)
            for out, v in zip((logits_s1, logits_s2), views)
        )
        loss_u = FP_SHARE * loss_fp + STRONG_SHARE * (loss_s1 + loss_s2)
        loss = loss_sup + c.unsup_weight * loss_u
        return loss, {
            "loss_sup": loss_sup.detach(),
            "loss_fp": loss_fp.detach(),
            "loss_s1": loss_s1.detach(),
            "loss_s2": loss_s2.detach(),
            "confident": confident_fraction(conf, valid, c.threshold),
        }
