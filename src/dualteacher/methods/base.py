"""The small interface every training method implements, and the pieces they share.

A method owns its networks (a student and any teachers), computes one iteration's loss from a
labelled and an unlabelled batch, and updates its teachers after the optimiser step. The
engine owns everything else: data, optimiser, schedule, evaluation, checkpoints, logging.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..augment import StrongAugConfig, apply_mix, make_mix_mask, normalize, random_partner, strong_photometric
from ..config import MethodConfig
from ..data.transforms import IGNORE_INDEX
from ..losses import pseudo_label_loss, supervised_ce

ModelBuilder = Callable[[float], nn.Module]
"""Builds a fresh network with the given drop-path (stochastic depth) rate."""


@dataclass
class Batch:
    """Images in [0, 1] on the device; ``mask`` (labelled) or ``valid`` (unlabelled) per pixel."""

    image: Tensor
    mask: Tensor | None = None
    valid: Tensor | None = None


@dataclass
class MethodContext:
    """What a method needs to build its networks and losses."""

    cfg: MethodConfig
    build: ModelBuilder
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class Method(ABC):
    """Base class: a student trained by gradients, optional teachers, one ``step`` per iteration."""

    name = "base"
    uses_unlabeled = True

    def __init__(self, ctx: MethodContext, student_drop_path: float | None = None) -> None:
        """``student_drop_path`` None takes ``method.student_drop_path``."""
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.student = ctx.build(ctx.cfg.student_drop_path if student_drop_path is None else student_drop_path)
        self.net: nn.Module = self.student
        self.strong = StrongAugConfig()

    def to(self, device: torch.device) -> "Method":
        for module in self.modules().values():
            module.to(device)
        return self

    def norm(self, images: Tensor) -> Tensor:
        """Normalise images in [0, 1] for the networks."""
        return normalize(images, self.ctx.mean, self.ctx.std)

    def modules(self) -> dict[str, nn.Module]:
        """Every network of the method by role; the keys name them in checkpoints and logs."""
        return {"student": self.student, **self.teachers()}

    def teachers(self) -> dict[str, nn.Module]:
        """The teacher networks by role (empty for single-model methods)."""
        return {}

    def active_teacher(self) -> str | None:
        """Role of the teacher making pseudo-labels in the current epoch (None without teachers)."""
        return None

    def start_epoch(self, epoch: int) -> None:
        """Called before the first iteration of every epoch."""

    @abstractmethod
    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the loss to back-propagate and detached tensors to log."""

    def learn_mixed_strong(
        self, labeled: Batch, unlabeled: Batch, conf: Tensor, pseudo: Tensor, gen: torch.Generator
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The FixMatch-style step shared by Mean Teacher and FixMatch: a strong photometric view
        of the unlabelled batch, mixed (first of ``method.mixings``) with its pseudo-labels, learnt
        in one pass together with the labelled batch: ``CE(labelled) + unsup_weight * L_mix``."""
        c = self.cfg
        strong = strong_photometric(unlabeled.image, gen, self.strong)
        mixed = mix(c.mixings[0], strong, pseudo, conf, unlabeled.valid, gen, num_classes=self.ctx.num_classes, cutmix_p=c.cutmix_p)
        n = labeled.image.shape[0]
        logits = self.net(self.norm(torch.cat([labeled.image, mixed.image])))
        loss_sup = supervised_ce(logits[:n], labeled.mask)
        loss_mix = pseudo_label_loss(logits[n:], mixed.label, mixed.conf, mixed.valid, c.threshold, c.threshold_mode)
        return loss_sup + c.unsup_weight * loss_mix, {
            "loss_sup": loss_sup.detach(),
            "loss_mix": loss_mix.detach(),
            "confident": confident_fraction(conf, unlabeled.valid, c.threshold),
        }

    def after_optimizer_step(self) -> None:
        """Called after every optimiser step (EMA updates live here)."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state beyond network weights."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""


def make_teacher(ctx: MethodContext, student: nn.Module) -> nn.Module:
    """A full-depth teacher: a copy of the student, or independently initialised if configured."""
    teacher = ctx.build(0.0)
    if ctx.cfg.teacher_init == "student":
        teacher.load_state_dict(student.state_dict())
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


@torch.no_grad()
def pseudo_label(teacher: nn.Module, images: Tensor) -> tuple[Tensor, Tensor]:
    """Confidence and argmax class per pixel from one pass without gradients (teachers are in eval
    mode; FixMatch labels with its own network in train mode)."""
    return confidence_and_label(teacher(images))


def confidence_and_label(logits: Tensor) -> tuple[Tensor, Tensor]:
    """Softmax confidence and argmax class per pixel of ``logits`` [B, C, H, W] (in float)."""
    conf, label = logits.float().softmax(1).max(1)
    return conf, label


def confident_fraction(conf: Tensor, valid: Tensor, threshold: float) -> Tensor:
    """Share of valid unlabelled pixels whose teacher confidence reaches the threshold (for logs)."""
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
    """Mix each image with a partner of the batch; one mask moves images, labels, confidences
    and valid-pixel maps together, so every mixed label is the label of the pixel it took."""
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
