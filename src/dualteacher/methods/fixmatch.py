"""FixMatch for segmentation (Sohn et al., NeurIPS 2020, as in the UniMatch code base).

One network, no teacher. Per iteration:
  1. the network itself, without gradients, predicts the weak view: confidences and argmax
     pseudo-labels (train mode, like the reference code's weak pass);
  2. a strong photometric view of the unlabelled batch, per image, mixed with the batch's own
     pseudo-labelled images (``method.mixings``: CutMix);
  3. one pass over [labelled, mixed strong]:
     L = CE(labelled) + w_u * CE(mixed strong, pseudo-labels), on pixels with confidence >= 0.95.
Steps 2 and 3 are :func:`~dualteacher.methods.common.learn_mixed_strong`, shared with Mean Teacher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dualteacher.methods.base import Batch, Method
from dualteacher.methods.common import PseudoLabelSettings, learn_mixed_strong, mixing_check, pseudo_label


@dataclass
class FixMatchSettings(PseudoLabelSettings):
    """FixMatch's settings: the shared pseudo-label settings and ``mixings``, the one mixing it uses (CutMix)."""

    mixings: tuple[str, ...] = ("cutmix",)

    def checks(self) -> list[tuple[str, bool, str]]:
        return [
            *super().checks(),
            mixing_check("mixings", self.mixings),
            ("mixings", len(self.mixings) == 1, "this method mixes with one mixing, e.g. [cutmix]"),
        ]


class FixMatch(Method):
    """A single network taught by its own confident weak-view predictions."""

    Settings = FixMatchSettings
    cfg: FixMatchSettings

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        assert unlabeled is not None and unlabeled.valid is not None
        conf, pseudo = pseudo_label(self.net, self.norm(unlabeled.image))
        return learn_mixed_strong(self, self.cfg.mixings[0], labeled, unlabeled, conf, pseudo, gen)
