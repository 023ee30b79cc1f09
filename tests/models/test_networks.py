"""The network contract and the one way a run's network is built: the ``model`` settings reach the
trained network and the one a checkpoint rebuilds alike (``models.model_from_config``), and a
hand-written network that meets ``models.SegmentationNetwork``, registered from this file alone in
``NETWORKS``, trains through ``train()`` and loads with ``load_model``."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dualteacher import load_model
from dualteacher.config import ModelConfig, load_config
from dualteacher.models.build import model_from_config
from dualteacher.models.contract import FeaturePerturbation, SegmentationNetwork, normalize
from dualteacher.models.smp import build_model
from dualteacher.registry import NETWORKS
from dualteacher.runlog import read_log
from dualteacher.training.loop import Trainer, train

from conftest import tiny_overrides


class TinyNet(nn.Module):
    """Not from segmentation_models_pytorch: two strided convolutions, a 1x1 classifier and x4
    bilinear upsampling; inputs are padded to the stride 4 and the logits cropped back."""

    stride = 4

    def __init__(self, num_classes: int, width: int) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: Tensor, perturb: FeaturePerturbation | None = None) -> Tensor | tuple[Tensor, Tensor]:
        size = (x.shape[-2], x.shape[-1])
        features = [self.encoder(F.pad(x, (0, -size[1] % self.stride, 0, -size[0] % self.stride)))]
        logits = self.decode(features, size)
        return logits if perturb is None else (logits, self.decode(perturb(features), size))

    def decode(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        logits = F.interpolate(self.head(features[0]), scale_factor=self.stride, mode="bilinear", align_corners=False)
        return logits[..., : size[0], : size[1]]

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        return list(self.encoder.parameters()), list(self.head.parameters())


def build_tiny(model: ModelConfig, num_classes: int, *, drop_path: float, pretrained: bool) -> TinyNet:
    if drop_path > 0:
        raise ValueError("TinyNet has no drop-path")
    return TinyNet(num_classes, model.decoder_channels or 8)


@pytest.mark.slow
def test_a_checkpoint_rebuilds_the_network_its_settings_describe(tiny_data, tmp_path: Path) -> None:
    run = tmp_path / "run"
    settings = {
        "model__output_stride": 8,
        "model__decoder_channels": 24,
        "model__aspp_dropout": 0.1,
        "train__epochs": 1,
    }
    trainer = Trainer(load_config(None, tiny_overrides(tiny_data, run, "supervised", **settings)), progress=False)
    trainer.fit()
    trained = trainer.method.student.eval()
    loaded = load_model(run / "last.safetensors")
    assert trained.stride == loaded.stride == 8
    assert {k: v.shape for k, v in loaded.network.state_dict().items()} == {
        k: v.shape for k, v in trained.state_dict().items()
    }
    assert [m.p for m in loaded.network.modules() if isinstance(m, nn.Dropout)] == [0.1]
    images = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.logits(images), trained(normalize(images, trainer.mean, trainer.std)))


def test_rebuilding_for_a_checkpoint_reads_no_pretrained_weights(tmp_path: Path) -> None:
    model = ModelConfig(encoder="tu-tf_efficientnet_lite0", weights=str(tmp_path / "absent.pth"), decoder_channels=16)
    with pytest.raises(FileNotFoundError, match="not found"):
        model_from_config(model, 3)
    assert model_from_config(model, 3, pretrained=False).stride == 16


@pytest.mark.slow
def test_a_hand_written_network_trains_through_the_engine_and_loads(tiny_data, tmp_path: Path) -> None:
    run = tmp_path / "tiny"
    overrides = tiny_overrides(tiny_data, run, "unimatch", model__arch="tiny_net", method__student_drop_path=0.0)
    with NETWORKS.registered("tiny_net", build_tiny):
        record = train(load_config(None, overrides), progress=False)
        loaded = load_model(run / "best.safetensors")
    assert isinstance(loaded.network, TinyNet) and isinstance(loaded.network, SegmentationNetwork)
    losses = [r["loss_fp"] for r in read_log(run) if r["type"] == "train"]
    assert len(losses) == 6 and all(math.isfinite(loss) for loss in losses)  # the perturbed stream ran
    assert 0.0 <= record["student/miou"] <= 1.0
    assert loaded.predict(torch.randint(0, 256, (37, 53, 3), dtype=torch.uint8).numpy()).shape == (37, 53)


def test_the_built_in_network_meets_the_contract_and_a_bad_builder_is_refused() -> None:
    assert isinstance(
        build_model("deeplabv3plus", "tu-tf_efficientnet_lite0", 3, decoder_channels=16), SegmentationNetwork
    )
    with (
        NETWORKS.registered("plain", lambda model, num_classes, **_: nn.Conv2d(3, num_classes, 1)),
        pytest.raises(TypeError, match="SegmentationNetwork"),
    ):
        model_from_config(ModelConfig(arch="plain"), 3)
