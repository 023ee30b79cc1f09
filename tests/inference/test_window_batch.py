"""Sliding windows in batches: the stitched result of one window per pass, in fewer passes."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from dualteacher.cli import build_parser
from dualteacher.config import ConfigError, load_config
from dualteacher.inference.metrics import sliding_window_logits
from dualteacher.inference.modes import EvalSettings, build_predictor
from dualteacher.models.smp import build_model


class CountingNet(nn.Module):
    """A network that records the batch size of every forward pass."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.batches: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.batches.append(x.shape[0])
        return self.net(x)


@pytest.fixture(scope="module")
def network() -> CountingNet:
    """A random-init ResNet-18 DeepLabV3+ whose argmax varies across pixels: at random init its
    logits are almost constant, so every BatchNorm gets scale 1 and the statistics of one batch
    of noise, and the head is scaled to logits of a few units."""
    torch.manual_seed(0)
    net = build_model("deeplabv3plus", "resnet18", 5)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.momentum = 1.0
        net.train()(torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
        net.eval().net.segmentation_head[0].weight.mul_(0.03)
    return CountingNet(net)


def test_batched_windows_equal_one_window_per_pass(network: CountingNet) -> None:
    images = torch.rand(2, 3, 70, 90, generator=torch.Generator().manual_seed(2))
    tile, stride = 32, 20  # 3 x 4 = 12 windows
    with torch.no_grad():
        network.batches.clear()
        one = sliding_window_logits(network, images, tile, stride, window_batch=1)
        assert network.batches == [2] * 12  # one window (of both images) per pass
        assert len(one.argmax(1).unique()) >= 3  # an argmax comparison that means something
        for window_batch, passes in ((None, [8, 8, 8]), (10, [10] * 2 + [4]), (64, [24])):  # None: the default, 8
            network.batches.clear()
            kwargs = {} if window_batch is None else {"window_batch": window_batch}
            batched = sliding_window_logits(network, images, tile, stride, **kwargs)
            assert network.batches == passes  # window_batch // 2 windows of each image per pass
            assert torch.allclose(batched, one, atol=1e-5)
            assert torch.equal(batched.argmax(1), one.argmax(1))


def test_a_batch_larger_than_window_batch_runs_one_window_per_pass(network: CountingNet) -> None:
    images = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        network.batches.clear()
        sliding_window_logits(network, images, 32, 8, window_batch=2)
    assert network.batches == [3] * 4  # never more crops per pass than before batching


def test_out_of_memory_halves_the_windows_per_pass() -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1)
    batches: list[int] = []

    def small_memory(x: Tensor) -> Tensor:
        batches.append(x.shape[0])
        if x.shape[0] > 3:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated: more than 3 crops)")
        return conv(x)

    images = torch.rand(1, 3, 16, 40, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = sliding_window_logits(conv, images, 16, 8, window_batch=1)  # 4 windows
        got = sliding_window_logits(small_memory, images, 16, 8, window_batch=8)
    assert batches == [4, 2, 2]  # 4 windows failed, then 2 + 2
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)

    def no_memory(x: Tensor) -> Tensor:
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(torch.OutOfMemoryError):
        sliding_window_logits(no_memory, images, 16, 8, window_batch=8)


def test_window_batch_comes_from_config_cli_and_settings(network: CountingNet) -> None:
    settings = EvalSettings.from_config(load_config(None, ["data.eval_mode=slide", "data.eval_window_batch=3"]).data)
    assert settings.window_batch == 3 and EvalSettings().window_batch == 8
    assert settings.override(tile=16).window_batch == 3 and settings.override(window_batch=5).window_batch == 5
    assert "window_batch" not in settings.protocol() and settings.protocol()["mode"] == "slide"  # not in model cards
    with pytest.raises(ValueError, match="window_batch"):
        EvalSettings(window_batch=0)
    with pytest.raises(ValueError, match="window_batch"):
        sliding_window_logits(network, torch.rand(1, 3, 8, 8), 8, window_batch=0)
    with pytest.raises(ConfigError, match="data.eval_window_batch"):
        load_config(None, ["data.eval_window_batch=0"])
    for command in (["eval", "ckpt"], ["predict", "ckpt", "x.png", "--out", "o"]):
        assert build_parser().parse_args([*command, "--window-batch", "4"]).window_batch == 4
    with torch.no_grad():
        network.batches.clear()
        build_predictor(network, settings.override(tile=32, stride=32), num_classes=5)(torch.rand(1, 3, 32, 96))
    assert network.batches == [3]  # the slide mode passes the setting on
