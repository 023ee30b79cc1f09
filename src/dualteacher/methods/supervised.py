"""Supervised baseline: the student alone, trained on the labelled batch."""

from __future__ import annotations

import torch
from torch import Tensor

from dualteacher.methods.base import Batch, Method
from dualteacher.semi.losses import supervised_ce


class Supervised(Method):
    """Cross-entropy on labelled pixels; no unlabelled data, full depth. Its settings are the
    shared ones only (:class:`~dualteacher.config.MethodSettings`: the warm start)."""

    uses_unlabeled = False

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        assert labeled.mask is not None
        loss = supervised_ce(self.net(self.norm(labeled.image)), labeled.mask)
        return loss, {"loss_sup": loss.detach()}
