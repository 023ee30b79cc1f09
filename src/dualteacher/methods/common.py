"""What several methods share: their common settings, pseudo-labelling, mixing a batch with its
pseudo-labels, EMA teachers made from the student, and the mixed-strong step of Mean Teacher and
FixMatch. The interface itself is :mod:`dualteacher.methods.base`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from dualteacher.config import MethodSettings, choice_check
from dualteacher.data.transforms import IGNORE_INDEX
from dualteacher.registry import MIXINGS, THRESHOLD_MODES
from dualteacher.semi.losses import pseudo_label_loss, supervised_ce
from dualteacher.semi.mixing import apply_mix, make_mix_mask, random_partner
from dualteacher.semi.photometric import strong_photometric

if TYPE_CHECKING:
    from dualteacher.methods.base import Batch, Method, MethodContext
    from dualteacher.models.contract import SegmentationNetwork


@dataclass
class PseudoLabelSettings(MethodSettings):
    """Settings of every method that learns from pseudo-labels on unlabelled images.

    ``threshold``: confidence a pseudo-label needs (0.95, FixMatch / UniMatch / Dual Teacher);
    ``threshold_mode``: how it weights the loss (:data:`~dualteacher.registry.THRESHOLD_MODES`:
    ``pixel`` masks each pixel, ``fraction`` weights by the share of confident pixels as the
    official Dual Teacher code does); ``unsup_weight``: weight of the unlabelled loss;
    ``student_drop_path``: the student's stochastic-depth rate (0 for these methods' papers);
    ``cutmix_p``: probability that an image is CutMix-ed (1: always).
    """

    threshold: float = 0.95
    threshold_mode: str = "pixel"
    unsup_weight: float = 1.0
    student_drop_path: float = 0.0
    cutmix_p: float = 1.0

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            *super().checks(),
            ("threshold", 0.0 <= self.threshold <= 1.0, "must be in [0, 1]"),
            choice_check("threshold_mode", self.threshold_mode, THRESHOLD_MODES),
            ("unsup_weight", self.unsup_weight >= 0, "must be >= 0"),
            ("student_drop_path", 0.0 <= self.student_drop_path < 1.0, "must be in [0, 1)"),
            ("cutmix_p", 0.0 <= self.cutmix_p <= 1.0, "must be in [0, 1]"),
        ]


@dataclass
class TeacherSettings(PseudoLabelSettings):
    """Settings of methods with EMA teachers (Mean Teacher, Dual Teacher).

    The EMA update is ``θt ← m·θt + (1 − m)·θs`` with ``m = ema_momentum``, or with
    ``ema_warmup`` ``min(1 − 1/(n + 1), ema_momentum)`` at the teacher's n-th update;
    ``ema_buffers`` averages BatchNorm statistics too; ``teacher_init``: ``student`` (a copy of the
    student) or ``independent`` (its own initialisation, as the official code's heads).
    """

    ema_momentum: float = 0.99
    ema_warmup: bool = True
    ema_buffers: bool = True
    teacher_init: str = "student"

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            *super().checks(),
            ("ema_momentum", 0.0 <= self.ema_momentum < 1.0, "must be in [0, 1)"),
            choice_check("teacher_init", self.teacher_init, ("student", "independent")),
            (
                "init_from",
                self.init_from is None or self.teacher_init == "student",
                "starts every network, teachers too, from one checkpoint: it needs method.teacher_init=student",
            ),
        ]


def mixing_check(key: str, names: tuple[str, ...]) -> tuple[str, bool, str]:
    """The check that every name in ``names`` is a registered mixing (the first unknown one is
    named, with the nearest registered one)."""
    unknown = [name for name in names if name not in MIXINGS]
    if not unknown:
        return key, True, ""
    _, _, why = choice_check(key, unknown[0], MIXINGS)
    return key, False, f"unknown mixing: {why}"


def make_teacher(ctx: MethodContext, student: nn.Module, teacher_init: str) -> nn.Module:
    """A full-depth teacher in eval mode without gradients: a copy of ``student`` when
    ``teacher_init`` is ``student``, else independently initialised."""
    teacher = ctx.build(0.0)
    if teacher_init == "student":
        teacher.load_state_dict(student.state_dict())
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def pseudo_label(network: SegmentationNetwork | nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """Confidence and argmax class per pixel ([B, H, W] float and long) from one pass of
    ``network`` without gradients over normalised ``images`` [B, 3, H, W] (teachers are in eval
    mode; FixMatch labels with its own network in train mode)."""
    return confidence_and_label(network(images))


def confidence_and_label(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax confidence and argmax class per pixel of ``logits`` [B, C, H, W] (in float)."""
    conf, label = logits.float().softmax(1).max(1)
    return conf, label


def confident_fraction(conf: Tensor, valid: Tensor, threshold: float) -> Tensor:
    """Share of valid unlabelled pixels whose confidence reaches ``threshold`` (for logs)."""
    return ((conf >= threshold) & valid).sum() / valid.sum().clamp(min=1)


@dataclass
class MixedView:
    """An unlabelled batch after mixing: images, pseudo-labels, confidences, valid pixels."""

    image: Tensor
    label: Tensor
    conf: Tensor
    valid: Tensor


def mix(
    kind: str,
    image: Tensor,
    label: Tensor,
    conf: Tensor,
    valid: Tensor,
    gen: torch.Generator,
    *,
    num_classes: int,
    cutmix_p: float = 1.0,
) -> MixedView:
    """Mix each image with a partner of the batch (mixing ``kind`` of
    :data:`~dualteacher.registry.MIXINGS`); one mask moves images, labels, confidences and
    valid-pixel maps together, so every mixed label is the label of the pixel it took."""
    if kind == "none":
        return MixedView(image, label, conf, valid)
    perm = random_partner(image.shape[0], gen)
    mask = make_mix_mask(kind, torch.where(valid, label, IGNORE_INDEX), perm, gen, p=cutmix_p, num_classes=num_classes)
    return MixedView(
        apply_mix(mask, perm, image),
        apply_mix(mask, perm, label),
        apply_mix(mask, perm, conf),
        apply_mix(mask, perm, valid),
    )


def learn_mixed_strong(
    method: Method, mixing: str, labeled: Batch, unlabeled: Batch, conf: Tensor, pseudo: Tensor, gen: torch.Generator
) -> tuple[Tensor, dict[str, Tensor]]:
    """The step Mean Teacher and FixMatch share once they have pseudo-labels: a strong
    photometric view of the unlabelled batch, mixed (``mixing``) with its pseudo-labels, learnt in
    one pass of the student together with the labelled batch:
    ``L = CE(labelled) + unsup_weight * L_mix`` (FixMatch, Sohn et al. 2020, eq. 4, with the
    segmentation mixing of the UniMatch code base)."""
    c = method.cfg
    assert isinstance(c, PseudoLabelSettings) and labeled.mask is not None and unlabeled.valid is not None
    strong = strong_photometric(unlabeled.image, gen, method.strong)
    mixed = mix(
        mixing, strong, pseudo, conf, unlabeled.valid, gen, num_classes=method.ctx.num_classes, cutmix_p=c.cutmix_p
    )
    n = labeled.image.shape[0]
    logits = method.net(method.norm(torch.cat([labeled.image, mixed.image])))
    loss_sup = supervised_ce(logits[:n], labeled.mask)
    loss_mix = pseudo_label_loss(logits[n:], mixed.label, mixed.conf, mixed.valid, c.threshold, c.threshold_mode)
    return loss_sup + c.unsup_weight * loss_mix, {
        "loss_sup": loss_sup.detach(),
        "loss_mix": loss_mix.detach(),
        "confident": confident_fraction(conf, unlabeled.valid, c.threshold),
    }
