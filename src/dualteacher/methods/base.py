"""The small interface every training method implements, and the pieces they share.

A method owns its networks (the trained ones, a student by default, and any teachers) and their
optimiser groups, computes one iteration's loss from a labelled and an unlabelled batch, and
updates its teachers after the optimiser step. The engine owns everything else: data, the
optimiser, precision, DDP, schedule, evaluation, checkpoints, logging.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from dualteacher.semi.augment import StrongAugConfig, apply_mix, make_mix_mask, normalize, random_partner, strong_photometric
from dualteacher.config import MethodConfig, OptimConfig
from dualteacher.data.transforms import IGNORE_INDEX
from dualteacher.semi.losses import pseudo_label_loss, supervised_ce
from dualteacher.training.optim import optimizer_groups

if TYPE_CHECKING:
    from dualteacher.models.network import SegmentationNetwork

ModelBuilder = Callable[[float], "SegmentationNetwork"]
"""Builds a fresh network (an ``nn.Module``) with the given drop-path (stochastic depth) rate."""


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
    """Base class: networks trained by gradients (the student), optional teachers, one ``step`` per
    iteration. Register a subclass by name in :data:`~dualteacher.registry.METHODS`."""

    uses_unlabeled = True
    """Whether :meth:`step` reads an unlabelled batch (training then loads and checks that split)."""

    recipe_settings: tuple[str, ...] = ()
    """The method's own ``key=value`` settings in the shared recipe (:mod:`dualteacher.experiments.recipe`),
    applied after the recipe's and before the user's."""

    @classmethod
    def check_config(cls, cfg: MethodConfig) -> None:
        """Check the ``method`` settings against what this method accepts; called by the config
        validation of every run of it. Raises :class:`~dualteacher.config.ConfigError` naming
        the key; the default accepts every setting that passed the shared checks."""

    def __init__(self, ctx: MethodContext, student_drop_path: float | None = None) -> None:
        """``student_drop_path`` None takes ``method.student_drop_path``."""
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.student = ctx.build(ctx.cfg.student_drop_path if student_drop_path is None else student_drop_path)
        self.wrapped: dict[str, nn.Module] = {}
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
        return {**self.trained(), **self.teachers()}

    def trained(self) -> dict[str, nn.Module]:
        """The networks the optimiser trains, by role; the student first (it is evaluated per class,
        compared with the teachers and drawn)."""
        return {"student": self.student}

    def teachers(self) -> dict[str, nn.Module]:
        """The teacher networks by role (empty for single-model methods)."""
        return {}

    def optimizer_groups(self, optim: OptimConfig) -> list[dict[str, Any]]:
        """The optimiser's parameter groups: :func:`~dualteacher.training.optim.optimizer_groups` of every trained network."""
        return [group for module in self.trained().values() for group in optimizer_groups(module, optim)]

    def wrap(self, wrapper: Callable[[nn.Module], nn.Module]) -> None:
        """Route the forward passes of every trained network through ``wrapper`` (the engine's
        DistributedDataParallel); see :meth:`forward_net`."""
        self.wrapped = {role: wrapper(module) for role, module in self.trained().items()}

    def forward_net(self, role: str) -> nn.Module:
        """The trained network ``role`` as a forward pass that back-propagates must call it: its
        wrapper from :meth:`wrap` (DDP synchronises gradients in it), else the network itself."""
        return self.wrapped[role] if role in self.wrapped else self.trained()[role]

    @property
    def net(self) -> nn.Module:
        """The student as forward passes call it (:meth:`forward_net`)."""
        return self.forward_net("student")

    def train(self, mode: bool = True) -> None:
        """Put the trained networks in training mode (``mode`` False: eval mode); teachers stay in eval mode."""
        for module in self.trained().values():
            module.train(mode)

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
def pseudo_label(teacher: SegmentationNetwork, images: Tensor) -> tuple[Tensor, Tensor]:
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
