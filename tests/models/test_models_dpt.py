"""DPT on a DINOv2-style ViT/14 (random init): any input size, UniMatch V2's head, weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dualteacher.models.pretrained import WeightsMismatchError
from dualteacher.models.smp import SegModel, build_model


@pytest.fixture(scope="module")
def dpt() -> SegModel:
    torch.manual_seed(0)
    return build_model("dpt", "tu-vit_small_patch14_dinov2", 3, decoder_channels=16).eval()


def test_dpt_on_patch14_predicts_at_any_input_size(dpt: SegModel) -> None:
    assert dpt.stride == 28  # twice the patch: the decoder halves and doubles the token grid
    factors = [type(block.upsample).__name__ for block in dpt.net.decoder.reassemble_blocks]
    assert factors == ["ConvTranspose2d", "ConvTranspose2d", "Identity", "Conv2d"]  # x4, x2, x1, x1/2
    with torch.no_grad():
        for size in ((28, 28), (37, 53)):
            x = torch.randn(1, 3, *size)
            logits = dpt(x)
            assert logits.shape == (1, 3, *size)
            features = dpt.features(x)
            grid = tuple(-(-side // 28) * 2 for side in size)  # padded to a multiple of 28, patch 14
            assert len(features) == 4 and all(f.shape[-2:] == grid for f in features)
            torch.testing.assert_close(dpt.decode(features, size=size), logits)


def test_dpt_student_gets_drop_path_and_encoder_params_are_split(dpt: SegModel) -> None:
    student = build_model("dpt", "tu-vit_small_patch14_dinov2", 3, decoder_channels=16, drop_path=0.1)
    factors = student._drop_path_factors  # two per block, ramped 0 -> 1 (block 0 has none)
    assert student.drop_path == 0.1 and len(factors) == 22 and max(factors.values()) == pytest.approx(1.0)
    encoder, head = dpt.param_groups()
    assert {id(p) for p in encoder} == {id(p) for p in dpt.net.encoder.parameters()} and head


def test_dinov2_checkpoint_loads_with_its_mask_token(dpt: SegModel, tmp_path: Path) -> None:
    state = {k: v.clone() for k, v in dpt.net.encoder.model.state_dict().items()}
    state["pos_embed"] = torch.randn_like(state["pos_embed"])
    state["mask_token"] = torch.zeros(1, state["cls_token"].shape[-1])  # as in Meta's DINOv2 releases
    torch.save(state, tmp_path / "dinov2.pth")
    loaded = build_model(
        "dpt", "tu-vit_small_patch14_dinov2", 3, decoder_channels=16, weights=str(tmp_path / "dinov2.pth")
    )
    torch.testing.assert_close(loaded.net.encoder.model.pos_embed, state["pos_embed"])
    del state["norm.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(WeightsMismatchError, match="missing keys.*\n.*norm.weight"):
        build_model("dpt", "tu-vit_small_patch14_dinov2", 3, decoder_channels=16, weights=str(tmp_path / "broken.pth"))


def test_dpt_refuses_a_cnn_encoder() -> None:
    with pytest.raises(ValueError, match="DPT needs a timm ViT"):
        build_model("dpt", "mit_b0", 3)


def test_dpt_features_are_the_vits_normalised_intermediate_layers(dpt: SegModel) -> None:
    """UniMatch V2's DPT reads DINOv2's get_intermediate_layers(norm=True): the final norm applied
    to each layer's tokens, which timm gives as forward_intermediates(norm=True)."""
    encoder, x = dpt.net.encoder, torch.randn(2, 3, 28, 56)
    with torch.no_grad():
        expected = encoder.model.forward_intermediates(
            x, indices=encoder._output_indices, norm=True, intermediates_only=True
        )
        raw = encoder.model.forward_intermediates(x, indices=encoder._output_indices, intermediates_only=True)
        features = dpt.features(x)
    assert len(features) == len(expected) == 4
    for feature, normalised, plain in zip(features, expected, raw):
        torch.testing.assert_close(feature, normalised)
        assert not torch.allclose(feature, plain)  # the norm is applied, not an identity here
