"""The small interface every training method implements (the shared pieces are in
:mod:`dualteacher.methods.common`).

A method owns its networks (the trained ones, a student by default, and any teachers) and their
optimiser groups, computes one iteration's loss from a labelled and an unlabelled batch, and
updates its teachers after the optimiser step. The engine owns everything else: data, the
optimiser, precision, DDP, schedule, evaluation, checkpoints, logging.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from dualteacher.config import MethodSettings, OptimConfig
from dualteacher.models.contract import normalize
from dualteacher.semi.photometric import StrongAugConfig
from dualteacher.training.optim import optimizer_groups

ModelBuilder = Callable[[float], nn.Module]
"""Builds a fresh network (an ``nn.Module``) with the given drop-path (stochastic depth) rate."""


@dataclass
class Batch:
    """Images in [0, 1] on the device; ``mask`` (labelled) or ``valid`` (unlabelled) per pixel."""

    image: Tensor
    mask: Tensor | None = None
    valid: Tensor | None = None


@dataclass
class MethodContext:
    """What a method needs to build its networks and losses: its settings (an instance of its
    ``Settings``), a network builder, the classes, the normalisation of images in [0, 1], and
    ``labeled_pass``, the iterations one pass over the labelled split takes (all ranks together;
    the official Dual Teacher code's epoch)."""

    cfg: MethodSettings
    build: ModelBuilder
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    labeled_pass: int


class Method(ABC):
    """Base class: networks trained by gradients (the student), optional teachers, one ``step`` per
    iteration. Register a subclass by name in :data:`~dualteacher.registry.METHODS`."""

    Settings: ClassVar[type[MethodSettings]] = MethodSettings
    """The method's settings with its paper's defaults: the ``method`` section of a config is read
    into this class, so a key it does not declare is an error."""

    uses_unlabeled = True
    """Whether :meth:`step` reads an unlabelled batch (training then loads and checks that split)."""

    recipe_settings: tuple[str, ...] = ()
    """The method's own ``key=value`` settings in the shared recipe (:mod:`dualteacher.experiments.recipe`),
    applied after the recipe's and before the user's."""

    def __init__(self, ctx: MethodContext) -> None:
        """The student is built with the method's ``student_drop_path`` (0 for a method without
        that setting)."""
        self.ctx = ctx
        self.cfg = ctx.cfg
        self.student = ctx.build(getattr(ctx.cfg, "student_drop_path", 0.0))
        self.wrapped: dict[str, nn.Module] = {}
        self.strong = StrongAugConfig()

    def to(self, device: torch.device) -> Method:
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
        """Role of the teacher making pseudo-labels now (None without teachers)."""
        return None

    def begin_step(self, iteration: int, epoch: int) -> None:
        """Called before every :meth:`step` with the run's iteration and epoch (0-based); methods
        whose teachers take shifts switch them here. It must depend on its arguments and the
        method's own state only, so a resumed run takes the same turns."""

    @abstractmethod
    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        """Return the loss to back-propagate and detached tensors to log."""

    def after_optimizer_step(self) -> None:
        """Called after every optimiser step (EMA updates live here)."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state beyond network weights."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of :meth:`state_dict`."""
