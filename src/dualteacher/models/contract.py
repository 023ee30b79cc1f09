"""The contract every segmentation network meets (:class:`SegmentationNetwork`), what builds one
(:class:`NetworkBuilder`), and the input normalisation networks are fed with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, overload, runtime_checkable

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from dualteacher.config import ModelConfig


Normalization = tuple[tuple[float, float, float], tuple[float, float, float]]
"""Per-channel (mean, std) of RGB inputs in [0, 1]."""


IMAGENET_MEAN_STD: Normalization = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
"""The torchvision ImageNet statistics, the default of an encoder whose weights state none."""


FeaturePerturbation = Callable[[list[Tensor]], list[Tensor]]
"""Maps encoder feature maps (see :meth:`~dualteacher.models.smp.SegModel.features`) to perturbed ones."""


@runtime_checkable
class SegmentationNetwork(Protocol):
    """What the engine, the methods, inference and export ask of a network, beyond being an
    ``nn.Module`` (parameters, state dict, train/eval, DDP): the contract for a network not from
    segmentation_models_pytorch. :class:`~dualteacher.models.smp.SegModel` is the built-in one; a builder registered in
    :data:`~dualteacher.registry.NETWORKS` returns another (:func:`~dualteacher.models.build.model_from_config` checks it).

    Drop-path (stochastic depth) is the builder's ``drop_path`` argument; a network without it
    refuses a rate > 0 with ``ValueError``.
    """

    stride: int
    """Input sides are padded (bottom/right) up to a multiple of this inside the network (1: no
    padding); the logits still have the input size. Export pads to it in the graph."""

    @overload
    def __call__(self, x: Tensor, perturb: None = None) -> Tensor: ...

    @overload
    def __call__(self, x: Tensor, perturb: FeaturePerturbation) -> tuple[Tensor, Tensor]: ...

    def __call__(self, x: Tensor, perturb: FeaturePerturbation | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """The module's ``forward``: float logits ``[B, num_classes, H, W]`` for normalised float
        images ``x`` ``[B, 3, H, W]`` of any H, W (float32; under CUDA autocast the logits may be
        bf16/fp16).

        With ``perturb`` (only method ``unimatch`` passes one), one encoder pass decoded twice:
        returns (the clean logits, the logits decoded from ``perturb(features)``), where
        ``features`` is the network's list of feature maps ``[B, C_i, H_i, W_i]`` and ``perturb``
        may keep a sub-batch (its logits then have that batch size). Both streams must run inside
        this call so that DDP synchronises their gradients.
        """
        ...

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(encoder parameters, decoder and head parameters), a partition of every parameter;
        the second group learns ``optim.head_lr_mult`` times faster."""
        ...


if TYPE_CHECKING:

    class SegmentationModule(SegmentationNetwork, nn.Module):
        """For the type checker only (typing has no intersection of types): an ``nn.Module`` that meets
        :class:`SegmentationNetwork`, what :func:`~dualteacher.models.build.model_from_config` returns."""


class NetworkBuilder(Protocol):
    """A function that builds a :class:`SegmentationNetwork` from the run's ``model`` settings:
    what :data:`~dualteacher.registry.NETWORKS` maps a ``model.arch`` name to."""

    def __call__(
        self, model: ModelConfig, num_classes: int, *, drop_path: float, pretrained: bool
    ) -> SegmentationNetwork:
        """``pretrained`` False: random init (a checkpoint's weights are loaded over it), so
        ``model.weights`` is neither read nor downloaded. Raises ValueError for settings the
        network cannot honour."""
        ...


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Channel-wise ``(x - mean) / std`` for ``x`` in [0, 1] shaped [B, 3, H, W]."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def triple(values: Sequence[float]) -> tuple[float, float, float]:
    """Three floats from a sequence of three numbers (ValueError for another length)."""
    first, second, third = values
    return float(first), float(second), float(third)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
