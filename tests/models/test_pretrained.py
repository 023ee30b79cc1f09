"""Tests for dualteacher.models.pretrained: built-in ImageNet EfficientNet-Lite0 weights, file loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from skimage import data
from timm.layers import Conv2dSame

from dualteacher.models.pretrained import (
    EFFICIENTNET_LITE0,
    efficientnet_lite0_imagenet_state_dict,
    efficientnet_lite0_weights_path,
    load_state_dict_file,
)
from dualteacher.models.smp import build_model, default_normalization

torch.set_num_threads(1)

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
IMAGENET_COFFEE = {504, 967, 968}  # coffee mug, espresso, cup


@pytest.fixture(scope="module")
def mapped() -> dict[str, torch.Tensor]:
    return efficientnet_lite0_imagenet_state_dict()


def _preprocess(image: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(image).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
    return (x - 0.5) / 0.5


def _probabilities(model: torch.nn.Module, image: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(_preprocess(image)).softmax(dim=-1)[0]


def test_weights_file_ships_with_package() -> None:
    path = efficientnet_lite0_weights_path()
    assert path.is_file() and path.name == "efficientnet-lite0-57934424.pth"


def test_mapped_weights_classify_real_photos(mapped: dict[str, torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    random_cat = _probabilities(model, data.chelsea())[list(IMAGENET_CATS)].sum().item()
    model.load_state_dict(mapped, strict=True)

    cat = _probabilities(model, data.chelsea())
    assert cat.argmax().item() in IMAGENET_CATS
    assert cat.max().item() > 0.5
    assert cat[list(IMAGENET_CATS)].sum().item() > 0.9
    assert random_cat < 0.1

    coffee = _probabilities(model, data.coffee())
    assert coffee.argmax().item() in IMAGENET_COFFEE and coffee.max().item() > 0.5


def test_timm_variant_uses_tf_conventions() -> None:
    """The checkpoint came from TensorFlow: TF 'same' padding and BatchNorm eps 1e-3."""
    model = build_model("deeplabv3plus", "tu-tf_efficientnet_lite0", 3, weights=EFFICIENTNET_LITE0)
    backbone = model.net.encoder.model
    assert isinstance(backbone.conv_stem, Conv2dSame)
    norms = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(m.eps == pytest.approx(1e-3) for m in norms)


def test_segmodel_builtin_weights_equal_mapped(mapped: dict[str, torch.Tensor]) -> None:
    model = build_model("deeplabv3plus", "tu-tf_efficientnet_lite0", 3, weights=EFFICIENTNET_LITE0)
    trunk = model.net.encoder.model.state_dict()
    spot_checks = (
        "conv_stem.weight",
        "bn1.running_mean",
        "blocks.0.0.conv_dw.weight",
        "blocks.3.2.conv_pwl.weight",
        "blocks.6.0.bn3.running_var",
    )
    for key in spot_checks:
        assert torch.equal(trunk[key], mapped[key]), key
    assert all(torch.equal(value, mapped[key]) for key, value in trunk.items())
    head = {k for k in mapped if k.split(".")[0] in ("conv_head", "bn2", "classifier")}
    assert head and set(mapped) - set(trunk) == head

    torch.manual_seed(0)
    random_model = build_model("deeplabv3plus", "tu-tf_efficientnet_lite0", 3)
    random_stem = random_model.net.encoder.model.conv_stem.weight
    assert not torch.equal(random_stem, mapped["conv_stem.weight"])


def test_normalization_for_builtin_weights() -> None:
    half = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert default_normalization("tu-tf_efficientnet_lite0", EFFICIENTNET_LITE0) == half


def test_load_state_dict_file_unwraps_checkpoints(tmp_path: Path) -> None:
    state = {"module.conv.weight": torch.ones(2, 2), "module.conv.bias": torch.zeros(2)}
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    loaded = load_state_dict_file(path)
    assert set(loaded) == {"conv.weight", "conv.bias"}
    assert torch.equal(loaded["conv.weight"], torch.ones(2, 2))

    torch.save({"epoch": 3}, path)
    with pytest.raises(ValueError, match="does not hold a state_dict"):
        load_state_dict_file(path)
