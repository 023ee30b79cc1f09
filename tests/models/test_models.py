"""Tests for dualteacher.models.smp: building by name, padding, drop-path, splits and weight loading."""

from __future__ import annotations

import builtins
import copy
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import save_file
from timm.layers import DropPath
from torch import nn

from dualteacher.models.contract import count_parameters
from dualteacher.models.pretrained import WeightsMismatchError
from dualteacher.models.smp import SegModel, build_model, default_normalization, resolve_encoder_name

torch.set_num_threads(1)

ENCODERS = ["resnet18", "mit_b0", "tu-tf_efficientnet_lite0"]
ARCHS = [("deeplabv3plus", 16), ("deeplabv3plus", 8), ("segformer", 16), ("unet", 16), ("fpn", 16)]


def _build(arch: str, encoder: str, **kwargs) -> SegModel:
    torch.manual_seed(0)
    kwargs.setdefault("decoder_channels", 64)
    return build_model(arch, encoder, 3, **kwargs)


def _drop_probs(model: nn.Module) -> list[float]:
    return [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]


def _activate_residuals(model: nn.Module) -> None:
    """timm zero-initialises the last BN of residual branches; make the branches non-zero."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize(("arch", "output_stride"), ARCHS)
def test_output_matches_input_size_and_padded_network(arch: str, output_stride: int, encoder: str) -> None:
    model = _build(arch, encoder, output_stride=output_stride).eval()
    expected_stride = output_stride if arch == "deeplabv3plus" else 32
    assert model.stride == expected_stride
    x = torch.randn(2, 3, 37, 53)
    with torch.no_grad():
        logits = model(x)
        padded_h = -(-37 // model.stride) * model.stride
        padded_w = -(-53 // model.stride) * model.stride
        padded = torch.zeros(2, 3, padded_h, padded_w)
        padded[..., :37, :53] = x
        reference = model.net(padded)
    assert logits.shape == (2, 3, 37, 53)
    assert reference.shape == (2, 3, padded_h, padded_w)
    torch.testing.assert_close(logits, reference[..., :37, :53])


def test_deeplab_atrous_rates_follow_output_stride() -> None:
    def rates(model: SegModel) -> list[int]:
        branches = model.net.decoder.aspp[0].convs[1:4]
        convs = [next(m for m in b.modules() if isinstance(m, nn.Conv2d)) for b in branches]
        return [conv.dilation[0] for conv in convs]

    assert rates(_build("deeplabv3plus", "resnet18", output_stride=16)) == [6, 12, 18]
    assert rates(_build("DeepLabV3+", "resnet18", output_stride=8)) == [12, 24, 36]
    with pytest.raises(ValueError, match="8 or 16"):
        _build("deeplabv3plus", "resnet18", output_stride=32)


def test_aspp_dropout_defaults_off_so_train_mode_predictions_are_deterministic() -> None:
    x = torch.rand(2, 3, 32, 32)
    for rate, deterministic in ((0.0, True), (0.5, False)):
        net = build_model("deeplabv3plus", "resnet18", 3, aspp_dropout=rate).train()
        dropouts = [m for m in net.modules() if isinstance(m, nn.Dropout)]
        assert [m.p for m in dropouts] == [rate]
        torch.manual_seed(0)
        first = net(x)
        torch.manual_seed(1)
        assert torch.equal(first, net(x)) is deterministic
    assert [m.p for m in build_model("deeplabv3plus", "resnet18", 3).modules() if isinstance(m, nn.Dropout)] == [0.0]
    with pytest.raises(ValueError, match="aspp_dropout"):
        build_model("deeplabv3plus", "resnet18", 3, aspp_dropout=1.0)


def test_unknown_names_raise() -> None:
    with pytest.raises(ValueError, match="Unknown architecture"):
        build_model("pspnet2", "resnet18", 3)
    with pytest.raises(ValueError, match="Unknown encoder"):
        build_model("unet", "resnet19", 3)
    with pytest.raises(ValueError, match="Unknown timm model"):
        build_model("unet", "tu-not_a_model", 3)


def test_plain_resnet_is_built_with_timm() -> None:
    assert resolve_encoder_name("resnet50") == "tu-resnet50.tv_in1k"
    assert resolve_encoder_name("mit_b0") == "mit_b0"
    model = _build("deeplabv3plus", "resnet18")
    assert model.encoder_name == "tu-resnet18.tv_in1k"
    assert "conv1.weight" in model.net.encoder.model.state_dict()


@pytest.mark.parametrize("encoder", ENCODERS)
def test_drop_path_is_effective(encoder: str) -> None:
    x = torch.randn(2, 3, 64, 64)
    model = _build("fpn", encoder, drop_path=0.5).train()
    _activate_residuals(model)
    probs = _drop_probs(model)
    assert probs and max(probs) <= 0.5 and max(probs) >= 0.45
    first, second = model.features(x)[-1], model.features(x)[-1]
    assert not torch.allclose(first, second)

    model.set_drop_path(0.0)
    assert _drop_probs(model) == [0.0] * len(probs)
    torch.testing.assert_close(model.features(x)[-1], model.features(x)[-1], rtol=0, atol=0)

    model.set_drop_path(0.2)
    assert _drop_probs(model) == pytest.approx([p * 0.4 for p in probs])

    teacher = _build("fpn", encoder, drop_path=0.0).train()
    _activate_residuals(teacher)
    assert all(p == 0.0 for p in _drop_probs(teacher))
    torch.testing.assert_close(teacher.features(x)[-1], teacher.features(x)[-1], rtol=0, atol=0)


def test_mit_default_drop_path_is_overridden() -> None:
    teacher = _build("segformer", "mit_b0", drop_path=0.0)
    assert _drop_probs(teacher) and all(p == 0.0 for p in _drop_probs(teacher))
    student = _build("segformer", "mit_b0", drop_path=0.3)
    assert max(_drop_probs(student)) == pytest.approx(0.3)


def test_drop_path_refused_where_impossible() -> None:
    with pytest.raises(ValueError, match="cannot apply drop_path"):
        build_model("unet", "mobilenet_v2", 3, drop_path=0.1)
    model = _build("unet", "tu-tf_efficientnet_lite0", drop_path=0.0)
    with pytest.raises(ValueError, match="no drop-path layers"):
        model.set_drop_path(0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        model.set_drop_path(1.0)


@pytest.mark.parametrize("encoder", ENCODERS)
def test_student_and_teacher_state_dicts_match(encoder: str) -> None:
    student = _build("deeplabv3plus", encoder, drop_path=0.1).state_dict()
    teacher_model = _build("deeplabv3plus", encoder, drop_path=0.0)
    teacher = teacher_model.state_dict()
    assert list(student) == list(teacher)
    assert all(student[k].shape == teacher[k].shape for k in student)
    teacher_model.load_state_dict(student)
    assert all(torch.equal(teacher_model.state_dict()[k], student[k]) for k in student)


def test_deepcopied_student_can_become_teacher() -> None:
    student = _build("deeplabv3plus", "tu-tf_efficientnet_lite0", drop_path=0.1)
    teacher = copy.deepcopy(student)
    teacher.set_drop_path(0.0)
    assert all(p == 0.0 for p in _drop_probs(teacher))
    assert max(_drop_probs(student)) > 0.05 and student.drop_path == 0.1


@pytest.mark.parametrize("encoder", ENCODERS)
def test_param_groups_partition_parameters(encoder: str) -> None:
    model = _build("deeplabv3plus", encoder)
    backbone, head = model.param_groups()
    ids_backbone, ids_head = {id(p) for p in backbone}, {id(p) for p in head}
    assert backbone and head and not ids_backbone & ids_head
    assert len(backbone) + len(head) == len(list(model.parameters()))
    assert ids_backbone | ids_head == {id(p) for p in model.parameters()}
    assert ids_backbone == {id(p) for p in model.net.encoder.parameters()}
    assert count_parameters(model) == sum(p.numel() for p in backbone + head)


@pytest.mark.parametrize(
    ("arch", "encoder"),
    [("deeplabv3plus", "resnet18"), ("segformer", "mit_b0"), ("unet", "tu-tf_efficientnet_lite0")],
)
def test_features_and_decode_reproduce_forward(arch: str, encoder: str) -> None:
    model = _build(arch, encoder).eval()
    x = torch.randn(2, 3, 37, 53)
    with torch.no_grad():
        features = model.features(x)
        torch.testing.assert_close(model.decode(features, size=(37, 53)), model(x))
        assert model.decode(features).shape[-2:] == features[0].shape[-2:]
        dropped = [nn.functional.dropout2d(f, 0.5, training=True) for f in features]
        perturbed = model.decode(dropped, size=(37, 53))
    assert perturbed.shape == (2, 3, 37, 53)
    assert not torch.allclose(perturbed, model(x))


def _backbone_state(model: SegModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.net.encoder.model.state_dict().items()}


def test_local_weights_load_and_ignore_classifier_head(tmp_path: Path) -> None:
    source = _build("deeplabv3plus", "resnet18")
    state = _backbone_state(source)
    state["conv1.weight"] = torch.randn_like(state["conv1.weight"])
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 512), torch.randn(1000)
    torch.save(state, tmp_path / "resnet18.pth")
    save_file(state, str(tmp_path / "resnet18.safetensors"))
    for name in ("resnet18.pth", "resnet18.safetensors"):
        loaded = build_model("deeplabv3plus", "resnet18", 3, weights=str(tmp_path / name))
        backbone = loaded.net.encoder.model
        torch.testing.assert_close(backbone.conv1.weight, state["conv1.weight"])
        torch.testing.assert_close(backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_local_weights_load_into_native_smp_encoder(tmp_path: Path) -> None:
    encoder_state = _build("segformer", "mit_b0").net.encoder.state_dict()
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in encoder_state.items()}
    state["head.weight"], state["head.bias"] = torch.randn(1000, 256), torch.randn(1000)
    torch.save(state, tmp_path / "mit_b0.pth")
    model = build_model("segformer", "mit_b0", 3, weights=str(tmp_path / "mit_b0.pth"))
    loaded = model.net.encoder.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in loaded)


def test_local_weights_with_wrong_keys_are_listed(tmp_path: Path) -> None:
    state = _backbone_state(_build("deeplabv3plus", "resnet18"))
    state["stem.weight"] = state.pop("conv1.weight")
    state["layer1.0.bn1.bias"] = torch.zeros(3)
    path = tmp_path / "wrong.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(WeightsMismatchError) as info:
        build_model("deeplabv3plus", "resnet18", 3, weights=str(path))
    message = str(info.value)
    assert "missing keys" in message and "conv1.weight" in message
    assert "unexpected keys" in message and "stem.weight" in message
    assert "shape mismatches" in message and "layer1.0.bn1.bias" in message


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "executed.txt"
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Exploit(marker)}, path)
    with pytest.raises(ValueError, match="Refusing to load"):
        build_model("deeplabv3plus", "resnet18", 3, weights=str(path))
    assert not marker.exists()


def test_missing_weights_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        build_model("unet", "resnet18", 3, weights=str(tmp_path / "absent.pth"))


@pytest.mark.parametrize("encoder", ["resnet18", "mit_b0"])
def test_imagenet_weights_offline_give_clear_error(
    encoder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(RuntimeError, match="model hub .*local file path"):
        build_model("deeplabv3plus", encoder, 3, weights="imagenet")


def test_builtin_weights_need_matching_encoder() -> None:
    with pytest.raises(ValueError, match="tu-tf_efficientnet_lite0"):
        build_model("unet", "resnet18", 3, weights="efficientnet-lite0")


def test_default_normalization() -> None:
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    half = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert default_normalization("resnet50", None) == imagenet
    assert default_normalization("mit_b2", "imagenet") == imagenet
    assert default_normalization("tu-tf_efficientnet_lite0", None) == half
    assert default_normalization("timm-tf_efficientnet_lite2", "imagenet") == half
    assert default_normalization("tu-tf_efficientnet_lite0", "efficientnet-lite0") == half
