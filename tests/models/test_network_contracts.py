"""Every network keeps the network contract (:mod:`network_contract`): one class here per SMP
architecture of ``models.smp.ARCHITECTURES`` and per builder registered in
:data:`~dualteacher.registry.NETWORKS`, each with tiny settings at random init."""

from typing import ClassVar

from dualteacher.config import ModelConfig
from dualteacher.models.smp import ARCHITECTURES
from dualteacher.registry import NETWORKS

from network_contract import NetworkContract


class TestDeepLabV3Plus(NetworkContract):
    model = ModelConfig(arch="deeplabv3plus", encoder="tu-tf_efficientnet_lite0", decoder_channels=16)


class TestDeepLabV3PlusStride8(NetworkContract):
    model = ModelConfig(arch="deeplabv3plus", encoder="tu-tf_efficientnet_lite0", decoder_channels=16, output_stride=8)


class TestSegFormer(NetworkContract):
    model = ModelConfig(arch="segformer", encoder="mit_b0", decoder_channels=16)


class TestUNet(NetworkContract):
    model = ModelConfig(arch="unet", encoder="tu-tf_efficientnet_lite0", decoder_channels=16)


class TestFPN(NetworkContract):
    model = ModelConfig(arch="fpn", encoder="tu-tf_efficientnet_lite0", decoder_channels=64)  # GroupNorm: x64
    known_failures: ClassVar[dict[str, str]] = {
        "test_a_train_forward_without_drop_path_draws_nothing_from_the_global_rng": "SMP's FPN keeps its decoder Dropout2d(0.2) (decoder_dropout default): build_model turns only "
        "DeepLabV3+'s ASPP dropout off (model.aspp_dropout=0)",
    }


class TestDPT(NetworkContract):
    model = ModelConfig(arch="dpt", encoder="tu-vit_small_patch14_dinov2", decoder_channels=16)
    batch_atol = 1e-4  # the ViT's final norm on random-init tokens magnifies the rounding to ~2e-5
    known_failures: ClassVar[dict[str, str]] = {
        "test_a_train_forward_without_drop_path_draws_nothing_from_the_global_rng": "SMP's DPT segmentation head keeps its Dropout(0.1)",
    }


class TestWithoutDropPath(NetworkContract):
    """An SMP encoder without drop-path layers: the builder must refuse a rate > 0."""

    model = ModelConfig(arch="unet", encoder="mobilenet_v2", decoder_channels=16)
    drop_path = False


def test_every_network_has_a_contract_test() -> None:
    covered = {cls.model.arch for cls in NetworkContract.__subclasses__()}
    missing = [name for name in [*ARCHITECTURES, *NETWORKS] if name not in covered]
    assert not missing, f"add a NetworkContract subclass in {__file__} for {missing}"
    for cls in NetworkContract.__subclasses__():  # a known failure names a test of the contract
        assert all(callable(getattr(NetworkContract, name, None)) for name in cls.known_failures), cls.__name__
