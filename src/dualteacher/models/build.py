"""The one function that builds a run's network from its ``model`` settings
(:func:`model_from_config`), for training and for loading a checkpoint alike, and the
normalisation its inputs get (:func:`model_normalization`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from torch import nn

from dualteacher.config import ModelConfig
from dualteacher.models.contract import NetworkBuilder, Normalization, SegmentationNetwork, triple
from dualteacher.models.smp import build_model, default_normalization
from dualteacher.registry import NETWORKS

if TYPE_CHECKING:
    from dualteacher.models.contract import SegmentationModule


def model_from_config(
    model: ModelConfig, num_classes: int, *, drop_path: float = 0.0, pretrained: bool = True
) -> SegmentationModule:
    """The network that the ``model`` settings describe: the one place that reads them, for
    training and for rebuilding a checkpoint's network alike.

    ``model.arch`` names a builder of :data:`~dualteacher.registry.NETWORKS` (looked up first) or
    an SMP architecture (:func:`build_model`). ``pretrained`` False builds a random-init network
    without reading or downloading ``model.weights`` (a checkpoint's weights go over it).
    Raises ValueError for settings the network cannot honour, TypeError for a registered builder
    whose result is not an ``nn.Module`` meeting :class:`SegmentationNetwork`.
    """
    network: SegmentationNetwork
    if model.arch not in NETWORKS:
        network = build_model(
            model.arch,
            model.encoder,
            num_classes,
            weights=model.weights if pretrained else None,
            output_stride=model.output_stride,
            drop_path=drop_path,
            decoder_channels=model.decoder_channels,
            aspp_dropout=model.aspp_dropout,
        )
    else:
        builder: NetworkBuilder = NETWORKS.get(model.arch)
        network = builder(model, num_classes, drop_path=drop_path, pretrained=pretrained)
        if not (isinstance(network, nn.Module) and isinstance(network, SegmentationNetwork)):
            raise TypeError(
                f"network {model.arch!r} built a {type(network).__name__}, not an nn.Module with "
                "forward(x, perturb=None), .stride and .param_groups() (models.SegmentationNetwork)"
            )
    return cast("SegmentationModule", network)  # a SegModel, or a registered network checked just above


def model_normalization(model: ModelConfig) -> Normalization:
    """The (mean, std) the network's inputs are normalised with, for images in [0, 1]: the
    configured ``model.mean``/``model.std``, else those of the encoder's weights."""
    mean, std = default_normalization(model.encoder, model.weights)
    return triple(model.mean or mean), triple(model.std or std)
