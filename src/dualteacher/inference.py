"""Load a trained network from a checkpoint alone, and score it on a dataset split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .augment import normalize
from .checkpoint import CheckpointError, load_checkpoint, load_module
from .config import config_from_dict
from .data.build import eval_loader
from .data.folder import FolderDataset, read_split
from .data.transforms import EvalTransform
from .evaluate import Metrics, evaluate
from .models import build_model


@dataclass
class LoadedModel:
    """A network in eval mode with everything needed to use it: classes and normalisation."""

    network: nn.Module
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    role: str
    state: dict[str, Any]
    device: torch.device

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        """Logits for a float batch in [0, 1], ``[B, 3, H, W]``, at the input resolution."""
        return self.network(normalize(images.to(self.device), self.mean, self.std))

    def eval_dataset(self, root: str | Path, split: str = "val", *, batch_size: int = 16, workers: int = 0) -> Metrics:
        """mIoU, per-class IoU and pixel accuracy of this model on ``ROOT/splits/<split>.txt``."""
        root = Path(root)
        dataset = FolderDataset(root, read_split(root, split), labeled=True, transform=EvalTransform())
        loader = eval_loader(dataset, batch_size, workers=workers)
        metrics, _ = evaluate(self.logits, loader, len(self.classes), self.device)
        return metrics


def load_model(path: str | Path, role: str | None = None, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the network stored in ``path``.

    A ``best.safetensors`` holds one network; a training checkpoint (``last.safetensors``)
    holds the student and every teacher, of which ``role`` picks one (default: the student).
    """
    tensors, state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    device = torch.device(device)
    network = build_model(
        cfg.model.arch,
        cfg.model.encoder,
        state["num_classes"],
        weights=None,
        output_stride=cfg.model.output_stride,
        decoder_channels=cfg.model.decoder_channels,
    )
    if state["kind"] == "model":
        if role not in (None, state["role"]):
            raise CheckpointError(f"{path} holds only the {state['role']!r} network, not {role!r}")
        role = state["role"]
        load_module(network, tensors, "model")
    else:
        role = role or "student"
        load_module(network, tensors, f"model/{role}")
    network.to(device).eval()
    return LoadedModel(
        network=network,
        classes=list(state["classes"]),
        mean=tuple(state["mean"]),
        std=tuple(state["std"]),
        role=role,
        state=state,
        device=device,
    )
