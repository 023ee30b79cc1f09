"""FixMatch for segmentation (Sohn et al., NeurIPS 2020, as in the UniMatch code base).

One network, no teacher. Per iteration:
  1. the network itself, without gradients, predicts the weak view: confidences and argmax
     pseudo-labels (train mode, like the reference code's weak pass);
  2. a strong photometric view of the unlabelled batch, per image, mixed with the batch's own
     pseudo-labelled images (CutMix by default: the first of ``method.mixings``);
  3. one pass over [labelled, mixed strong]:
     L = CE(labelled) + w_u * CE(mixed strong, pseudo-labels), on pixels with confidence >= 0.95.
Steps 2 and 3 are :meth:`Method.learn_mixed_strong`, shared with Mean Teacher.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dualteacher.methods.base import Batch, Method, pseudo_label


class FixMatch(Method):
    """A single network taught by its own confident weak-view predictions."""

    recipe_settings = ("method.mixings=[cutmix]", "method.student_drop_path=0.0")

    def step(self, labeled: Batch, unlabeled: Batch | None, gen: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        assert unlabeled is not None and unlabeled.valid is not None
        conf, pseudo = pseudo_label(self.net, self.norm(unlabeled.image))
        return self.learn_mixed_strong(labeled, unlabeled, conf, pseudo, gen)
