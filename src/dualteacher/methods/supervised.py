"""Supervised baseline: the student alone, trained on the labelled batch."""

from __future__ import annotations

import torch
from torch import Tensor

from dualteacher.semi.losses import supervised_ce
from dualteacher.methods.base import Batch, Method, MethodContext


class Supervised(Method):
    """Cross-entropy on labelled pixels; no unlabelled data, no drop-path."""

    uses_unlabeled = False

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx, student_drop_path=0.0)

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        loss = supervised_ce(self.net(self.norm(labeled.image)), labeled.mask)
        return loss, {"loss_sup": loss.detach()}
