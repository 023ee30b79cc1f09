"""The networks built by name through segmentation_models_pytorch (SMP): :func:`build_model`,
the :class:`SegModel` adapter that meets :class:`~dualteacher.models.contract.SegmentationNetwork`
(padding to its stride, a feature/decoder split, adjustable drop-path) and the normalisation
each encoder's weights expect.

Conventions fixed here for the SMP networks:

* Plain ``resnet18/34/50/101/152`` are built as timm ResNets (``tu-resnetN.tv_in1k``) rather
  than SMP's own ResNets, because SMP's ResNets silently ignore drop-path. The architecture and
  state-dict keys are torchvision's, so torchvision checkpoints load unchanged, and
  ``weights="imagenet"`` fetches the torchvision ImageNet weights (timm's ``tv_in1k`` tag).
  Note that timm zero-initialises the last BatchNorm of every residual branch at random init.
* ``drop_path`` is always honoured or refused: timm encoders (``tu-*``) receive it as
  ``drop_path_rate`` (ramped over blocks by timm), MiT encoders are reset to it (SMP would
  otherwise always use 0.1), and any other encoder raises ``ValueError`` when it is > 0.
* Inputs whose sides are not multiples of :attr:`SegModel.stride` are zero-padded at the
  bottom/right and the logits are cropped back, so logits always match the input size.
* ``dpt`` (SMP's DPT head on a timm ViT, e.g. ``tu-vit_base_patch14_dinov2`` for DINOv2
  ViT-B/14) follows UniMatch V2's DPT: the class token is ignored (``readout="ignore"``), the
  four token maps go through the ViT's final norm (DINOv2's ``get_intermediate_layers`` with
  ``norm=True``, which UniMatch V2 calls) and are resized by 4, 2, 1 and 1/2 whatever the patch size (SMP derives these
  factors from the patch size, which breaks patch 14), and the logits are resized bilinearly
  to the input size. The ViT accepts any input size (``dynamic_img_size``, position
  embeddings interpolated); inputs are padded to twice the patch size (28 for /14) so the
  token grid is even, as the decoder's x2 fusion steps need.
* Deep-stem ResNets (all timm, ``tu-<name>``, with ImageNet weights): SSS codebases replace
  the 7x7 stem conv by three 3x3 convs. ``resnet101s`` has the 64-64-128 deep stem and plain
  strided 1x1-conv shortcuts of UniMatch's ResNet (the PSPNet-style "deep base"; same layer
  names, so UniMatch's backbone files may load with ``weights=path``: not verified here);
  ``resnet101c`` is mmseg's ResNet-V1c (32-32-64 deep stem, plain shortcuts); ``resnet101d``
  (ResNet-D) is V1c plus a 2x2 average pool before the 1x1 shortcut conv of downsampling
  blocks, so its features differ from V1c/V1s. The same holds for 50/152. The shipped
  configs use ``tu-resnet101s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base import SegmentationModel
from segmentation_models_pytorch.base.initialization import initialize_decoder
from segmentation_models_pytorch.decoders.dpt.decoder import DPTDecoder
from timm.layers import DropPath
from torch import Tensor, nn

from dualteacher.models.contract import IMAGENET_MEAN_STD, FeaturePerturbation, Normalization, triple
from dualteacher.models.pretrained import (
    EFFICIENTNET_LITE0,
    EFFICIENTNET_LITE0_MEAN_STD,
    EFFICIENTNET_LITE0_TIMM_NAME,
    efficientnet_lite0_imagenet_state_dict,
    load_into,
    load_state_dict_file,
)

ARCHITECTURES: dict[str, type[SegmentationModel]] = {
    "deeplabv3plus": smp.DeepLabV3Plus,
    "segformer": smp.Segformer,
    "unet": smp.Unet,
    "fpn": smp.FPN,
    "dpt": smp.DPT,
}


DEEPLAB_ATROUS_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


TIMM_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


# Keys of classifier checkpoints that a segmentation backbone never has (and DINOv2's
# masked-image-modelling token, present in Meta's released DINOv2 checkpoints).
_HEAD_PREFIXES = ("fc.", "classifier.", "head.", "last_linear.", "mask_token")


def resolve_encoder_name(encoder: str) -> str:
    """The SMP encoder name actually built for ``encoder`` (plain ResNets become timm ResNets)."""
    return f"tu-{encoder}.tv_in1k" if encoder in TIMM_RESNETS else encoder


def _arch_key(arch: str) -> str:
    key = arch.lower().replace("_", "").replace("-", "").replace("+", "plus")
    if key not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {arch!r}; supported: {sorted(ARCHITECTURES)}")
    return key


def _timm_name(encoder: str) -> str | None:
    return encoder[3:] if encoder.startswith("tu-") else None


def _is_mit(encoder: str) -> bool:
    return encoder.startswith("mit_b")


class SegModel(nn.Module):
    """An SMP segmentation network with padding to its stride, a feature/decoder split and
    adjustable drop-path.

    Attributes:
        net: the wrapped SMP model (``encoder``, ``decoder``, ``segmentation_head``).
        arch: normalised architecture key, e.g. ``"deeplabv3plus"``.
        encoder_name: the SMP encoder name that was built (see :func:`resolve_encoder_name`).
        num_classes: number of output channels.
        stride: input sides are padded up to a multiple of this.
        drop_path: the current drop-path rate.
    """

    def __init__(
        self,
        net: SegmentationModel,
        *,
        arch: str,
        encoder_name: str,
        num_classes: int,
        drop_path_factors: dict[str, float],
        drop_path: float,
    ) -> None:
        super().__init__()
        self.net = net
        self.arch = arch
        self.encoder_name = encoder_name
        self.num_classes = num_classes
        self.tokens = arch == "dpt"
        # DPT: the decoder halves and doubles the token grid, which must therefore be even.
        self.stride = int(net.encoder.output_stride) * (2 if self.tokens else 1)
        self._drop_path_factors = drop_path_factors
        self.drop_path = 0.0
        self.set_drop_path(drop_path)

    def forward(self, x: Tensor, perturb: FeaturePerturbation | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """Logits ``[B, num_classes, H, W]`` for normalised images ``x`` ``[B, 3, H, W]``.

        With ``perturb``, the encoder runs once and the decoder twice: returns the clean logits
        and the logits decoded from ``perturb(features)`` (UniMatch's feature-perturbation
        stream; ``perturb`` may also select a sub-batch). Going through ``forward`` keeps both
        streams inside DistributedDataParallel's gradient hooks.
        """
        size = (x.shape[-2], x.shape[-1])
        features = self.features(x)
        logits = self.decode(features, size=size)
        if perturb is None:
            return logits
        return logits, self.decode(perturb(features), size=size)

    def features(self, x: Tensor) -> list[Tensor]:
        """Encoder feature maps of the padded input, in SMP's order (finest first).

        Index 0 is the padded input itself and, for MiT encoders, index 1 is an empty
        0-channel placeholder; the decoders of the supported architectures ignore both.
        For ``dpt`` the list holds the four token maps ``[B, D, H/patch, W/patch]`` only, each
        through the ViT's final norm, as UniMatch V2's DPT takes DINOv2's intermediate layers
        (``get_intermediate_layers``, ``norm=True``); SMP's encoder returns them un-normalised, which
        also left that norm without a gradient (DistributedDataParallel stops at iteration 2).
        """
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % self.stride, (-width) % self.stride
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        if self.tokens:
            norm = getattr(self.net.encoder.model, "norm", nn.Identity())
            return [norm(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) for t in self.net.encoder(x)[0]]
        return self.net.encoder(x)

    def decode(self, features: Sequence[Tensor], size: tuple[int, int] | None = None) -> Tensor:
        """Logits from (possibly perturbed) :meth:`features`, cropped to ``size`` = input (H, W).

        Without ``size`` the logits have the padded size.
        """
        if self.tokens:
            hidden = self.net.decoder(list(features), [None] * len(features))
            logits = self.net.segmentation_head(hidden)
            patch = int(self.net.encoder.output_stride)
            padded = (features[0].shape[-2] * patch, features[0].shape[-1] * patch)
            if logits.shape[-2:] != padded:
                logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
        else:
            logits = self.net.segmentation_head(self.net.decoder(list(features)))
        if size is not None:
            logits = logits[..., : size[0], : size[1]]
        return logits

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(encoder parameters, decoder and head parameters), together covering every parameter."""
        encoder = list(self.net.encoder.parameters())
        encoder_ids = {id(p) for p in encoder}
        return encoder, [p for p in self.parameters() if id(p) not in encoder_ids]

    def set_drop_path(self, rate: float) -> None:
        """Set the encoder's stochastic-depth rate, keeping the encoder's ramp over blocks.

        Raises ``ValueError`` if ``rate > 0`` and the encoder has no drop-path layers (timm
        encoders only have them when built with ``drop_path > 0``).
        """
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {rate}")
        if rate > 0 and not self._drop_path_factors:
            raise ValueError(
                f"Encoder {self.encoder_name!r} has no drop-path layers; "
                "build it with drop_path > 0 (timm encoders) or use a MiT/timm encoder."
            )
        for name, factor in self._drop_path_factors.items():
            cast(DropPath, self.get_submodule(name)).drop_prob = factor * rate  # the DropPath layers
        self.drop_path = rate


def build_model(
    arch: str,
    encoder: str,
    num_classes: int,
    *,
    weights: str | None = None,
    output_stride: int = 16,
    drop_path: float = 0.0,
    decoder_channels: int | None = None,
    aspp_dropout: float = 0.0,
) -> SegModel:
    """Build a segmentation network by name.

    Args:
        arch: ``deeplabv3plus`` (also ``DeepLabV3+``), ``segformer``, ``unet``, ``fpn`` or
            ``dpt`` (timm ViT encoders only, e.g. ``tu-vit_base_patch14_dinov2``).
        encoder: an SMP encoder name (``resnet50``, ``mit_b2``, ``tu-<timm name>``, ...).
        num_classes: output channels.
        weights: ``None`` (random init), ``"imagenet"`` (the library hub; needs internet),
            ``"efficientnet-lite0"`` (built-in ImageNet weights, encoder
            ``tu-tf_efficientnet_lite0`` only) or a path to a backbone checkpoint
            (``.safetensors``/``.pth``/``.pt``; classifier-head keys are ignored, any other
            mismatch raises :class:`~dualteacher.models.pretrained.WeightsMismatchError`).
        output_stride: DeepLabV3+ only, 16 (atrous rates 6/12/18) or 8 (12/24/36); the other
            architectures always use the encoder's full stride and ignore it.
        drop_path: encoder stochastic-depth rate (see the module docstring).
        decoder_channels: decoder width (DeepLabV3+ decoder, SegFormer MLP, FPN pyramid with
            half of it for the segmentation branch, UNet first stage halving per stage, DPT
            fusion width c with reassemble widths (c, 2c, 4c, 4c)); ``None`` keeps SMP's
            default (DPT: 256).
        aspp_dropout: DeepLabV3+ only: dropout probability after the ASPP projection. SMP
            defaults to 0.5; the DeepLabV3+ of UniMatch and of the official DeepLab code has none,
            and with it FixMatch/UniMatch would make pseudo-labels through a random half of
            the ASPP channels (they label in train mode). Other architectures ignore it.
    Raises ValueError for an unknown architecture or encoder, or a setting it cannot honour.
    """
    if not 0.0 <= aspp_dropout < 1.0:
        raise ValueError(f"aspp_dropout must be in [0, 1), got {aspp_dropout}")
    key = _arch_key(arch)
    name = resolve_encoder_name(encoder)
    timm_name = _timm_name(name)
    _check_encoder(key, name, timm_name, drop_path, weights)
    kwargs = _arch_kwargs(key, output_stride, decoder_channels)
    if key == "deeplabv3plus":
        kwargs["decoder_aspp_dropout"] = aspp_dropout
    if timm_name is not None and drop_path > 0:
        kwargs["drop_path_rate"] = drop_path
    net = _construct(ARCHITECTURES[key], name, timm_name, num_classes, weights, kwargs)
    if key == "dpt":
        _fix_dpt_decoder(net)
    backbone = net.encoder.model if timm_name is not None else net.encoder
    if weights == EFFICIENTNET_LITE0:
        _load_backbone(backbone, efficientnet_lite0_imagenet_state_dict(), timm_name)
    elif weights not in (None, "imagenet"):
        _load_backbone(backbone, load_state_dict_file(weights), timm_name)
    factors = _drop_path_factors(net, name, drop_path)
    return SegModel(
        net,
        arch=key,
        encoder_name=name,
        num_classes=num_classes,
        drop_path_factors=factors,
        drop_path=drop_path,
    )


def _check_encoder(arch_key: str, name: str, timm_name: str | None, drop_path: float, weights: str | None) -> None:
    if timm_name is not None:
        if not timm.is_model(timm_name):
            raise ValueError(f"Unknown timm model {timm_name!r} (encoder {name!r})")
    elif name not in smp.encoders.get_encoder_names():
        raise ValueError(f"Unknown encoder {name!r}; see segmentation_models_pytorch encoders")
    if not 0.0 <= drop_path < 1.0:
        raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
    if drop_path > 0 and timm_name is None and not _is_mit(name):
        raise ValueError(
            f"Encoder {name!r} cannot apply drop_path={drop_path}: use a timm encoder "
            "('tu-<name>'), a plain resnetN (built with timm) or a MiT encoder."
        )
    if arch_key == "dpt" and timm_name is None:
        raise ValueError(f"DPT needs a timm ViT encoder ('tu-vit_...'), got {name!r}")
    if weights == EFFICIENTNET_LITE0 and timm_name != EFFICIENTNET_LITE0_TIMM_NAME:
        raise ValueError(
            f"weights={EFFICIENTNET_LITE0!r} needs encoder 'tu-{EFFICIENTNET_LITE0_TIMM_NAME}', got {name!r}"
        )


def _arch_kwargs(key: str, output_stride: int, decoder_channels: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if key == "deeplabv3plus":
        if output_stride not in DEEPLAB_ATROUS_RATES:
            raise ValueError(f"DeepLabV3+ output_stride must be 8 or 16, got {output_stride}")
        kwargs["encoder_output_stride"] = output_stride
        kwargs["decoder_atrous_rates"] = DEEPLAB_ATROUS_RATES[output_stride]
    if key == "dpt":
        kwargs.update(decoder_readout="ignore", dynamic_img_size=True)
    if decoder_channels is not None:
        c = decoder_channels
        if key == "fpn" and c % 64:
            raise ValueError(f"FPN decoder_channels must be a multiple of 64 (GroupNorm), got {c}")
        channels: dict[str, dict[str, Any]] = {
            "deeplabv3plus": {"decoder_channels": c},
            "segformer": {"decoder_segmentation_channels": c},
            "unet": {"decoder_channels": (c, c // 2, c // 4, c // 8, c // 16)},
            "fpn": {"decoder_pyramid_channels": c, "decoder_segmentation_channels": c // 2},
            "dpt": {"decoder_fusion_channels": c, "decoder_intermediate_channels": (c, 2 * c, 4 * c, 4 * c)},
        }
        kwargs.update(channels[key])
    return kwargs


def _construct(
    cls: type[SegmentationModel],
    name: str,
    timm_name: str | None,
    num_classes: int,
    weights: str | None,
    kwargs: dict[str, Any],
) -> SegmentationModel:
    hub_weights: str | bool | None = None
    if weights == "imagenet":
        hub_weights = True if timm_name is not None else "imagenet"
    try:
        return cls(encoder_name=name, encoder_weights=hub_weights, classes=num_classes, **kwargs)
    except OSError as error:  # huggingface_hub's offline/HTTP errors are OSErrors
        if hub_weights is None:
            raise
        raise RuntimeError(
            f"Could not fetch 'imagenet' weights for encoder {name!r} from the model hub "
            f"(no internet?): {error}. Download them on a connected machine and pass the local "
            "file path as weights=..., or use weights=None. Setting HF_HUB_OFFLINE=1 makes "
            "this fail fast instead of retrying."
        ) from error


def _fix_dpt_decoder(net: SegmentationModel) -> None:
    """Rebuild SMP's DPT decoder with the resize factors 4, 2, 1, 1/2 for any patch size.

    SMP derives the factors from the patch size (stride / 4, / 8, ...), which for patch 14
    gives factors whose maps cannot be fused; a patch-16 ViT already gets these factors.
    """
    strides = list(net.encoder.output_strides)
    if all(s == 16 for s in strides):
        return
    old = net.decoder
    net.decoder = DPTDecoder(
        encoder_out_channels=net.encoder.out_channels,
        encoder_output_strides=[16] * len(strides),
        encoder_has_prefix_tokens=net.encoder.has_prefix_tokens,
        readout="ignore",
        intermediate_channels=[block.project_to_out_channel.out_channels for block in old.reassemble_blocks],
        fusion_channels=old.fusion_blocks[0].project.out_channels,
    )
    initialize_decoder(net.decoder)


def _load_backbone(backbone: nn.Module, state_dict: dict[str, Tensor], timm_name: str | None) -> None:
    load_into(
        backbone,
        state_dict,
        ignorable=_timm_head_keys(timm_name) if timm_name is not None else (),
        ignorable_prefixes=_HEAD_PREFIXES,
    )


def _timm_head_keys(timm_name: str) -> set[str]:
    """Keys of the full timm classifier that its features-only version lacks."""
    with torch.device("meta"):
        full = timm.create_model(timm_name, pretrained=False).state_dict()
        trunk = timm.create_model(timm_name, pretrained=False, features_only=True).state_dict()
    return set(full) - set(trunk)


def _drop_path_factors(net: SegmentationModel, name: str, drop_path: float) -> dict[str, float]:
    """Each DropPath module's rate relative to the nominal encoder rate."""
    if _is_mit(name):
        net.encoder.reset_drop_path(1.0)
        scale = 1.0
    elif drop_path > 0:
        scale = drop_path
    else:
        return {}
    factors = {
        f"net.encoder.{module_name}": module.drop_prob / scale
        for module_name, module in net.encoder.named_modules()
        if isinstance(module, DropPath)
    }
    if drop_path > 0 and not factors:
        raise ValueError(f"Encoder {name!r} accepted drop_path but has no DropPath layers")
    return factors


def default_normalization(encoder: str, weights: str | None = None) -> Normalization:
    """(mean, std) that the encoder's pretrained weights expect, for inputs scaled to [0, 1]."""
    if weights == EFFICIENTNET_LITE0:
        return EFFICIENTNET_LITE0_MEAN_STD
    name = resolve_encoder_name(encoder)
    timm_name = _timm_name(name)
    if timm_name is not None and timm.is_model(timm_name):
        cfg = timm.models.get_pretrained_cfg(timm_name)
        if cfg is not None:
            return triple(cfg.mean), triple(cfg.std)
    if "tf_efficientnet_lite" in name:
        return EFFICIENTNET_LITE0_MEAN_STD
    return IMAGENET_MEAN_STD
