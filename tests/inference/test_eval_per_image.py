"""Evaluation scores every image as if it were alone, whatever the batch size and the protocol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from dualteacher.data.build import eval_loader
from dualteacher.data.core import collate_eval
from dualteacher.data.registry import open_source
from dualteacher.inference.metrics import Predictor, evaluate, logits_predictor, size_groups, unpadded_groups
from dualteacher.inference.modes import EvalSettings, build_predictor, evaluate_split
from dualteacher.models.smp import build_model

# (H, W) of the val images: all different, except one size that appears twice (batched together).
SIZES = [(41, 53), (37, 61), (50, 33), (45, 45), (29, 70), (63, 39), (45, 45)]
SETTINGS = {
    "whole": EvalSettings(),
    "center": EvalSettings(mode="center", tile=40),
    "slide": EvalSettings(mode="slide", tile=32, stride=20),
    "flip+scales": EvalSettings(flip=True, scales=(0.75, 1.25)),
}


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder dataset of 3 classes whose val images have the sizes in ``SIZES``."""
    root = tmp_path_factory.mktemp("mixed") / "data"
    for folder in ("images", "masks", "splits"):
        (root / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, (height, width) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(root / "images" / f"v{i}.png")
        labels = rng.integers(0, 3, (height, width)).astype(np.uint8)
        labels[:2] = 255
        Image.fromarray(labels).save(root / "masks" / f"v{i}.png")
    (root / "classes.txt").write_text("a\nb\nc\n")
    (root / "splits" / "val.txt").write_text("".join(f"v{i}\n" for i in range(len(SIZES))))
    return root


@pytest.fixture(scope="module")
def network() -> nn.Module:
    """DeepLabV3+ with a ResNet-18, random init (ASPP image pooling sees the whole input), whose
    head is re-drawn on standardised features so that predictions vary across pixels (a random
    head alone predicts one class almost everywhere, and padding could not change the argmax)."""
    torch.manual_seed(0)
    net = build_model("deeplabv3plus", "resnet18", 3, weights=None).eval()
    head = net.net.segmentation_head[0]
    features: list[Tensor] = []
    hook = head.register_forward_hook(lambda module, inputs, output: features.append(inputs[0]))
    with torch.no_grad():
        net(torch.randn(1, 3, 48, 48))
        hook.remove()
        mean, std = features[0].mean((0, 2, 3)), features[0].std((0, 2, 3)).clamp_min(1e-6)
        head.weight.copy_(torch.randn(head.weight.shape) / std.view(1, -1, 1, 1))
        head.bias.copy_(-(head.weight[:, :, 0, 0] @ mean))
    return net


def _predict(network: nn.Module) -> Predictor:
    return logits_predictor(network, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.mark.parametrize("name", list(SETTINGS))
def test_scores_do_not_depend_on_the_batch_size(mixed_sizes: Path, network: nn.Module, name: str) -> None:
    source = open_source("folder", mixed_sizes)
    cpu = torch.device("cpu")
    results = [
        evaluate_split(_predict(network), source, "val", SETTINGS[name], cpu, batch_size=size)
        for size in (1, 3, len(SIZES))
    ]
    alone, *batched = results
    assert (alone[1].sum(0) > 100).sum() >= 2  # a meaningful comparison: not one class everywhere
    for metrics, conf in batched:
        assert torch.equal(conf, alone[1])
        assert metrics.miou == alone[0].miou


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_image_gets_its_logits_alone(mixed_sizes: Path, network: nn.Module, name: str) -> None:
    settings = SETTINGS[name]
    predictor = build_predictor(_predict(network), settings, num_classes=3)
    calls: list[tuple[Tensor, Tensor]] = []

    def recording(images: Tensor) -> Tensor:
        logits = predictor(images)
        calls.append((images, logits))
        return logits

    dataset = open_source("folder", mixed_sizes).dataset(
        [f"v{i}" for i in range(len(SIZES))], labeled=True, transform=settings.transform()
    )
    alone = [dataset[i]["image"].float().div(255) for i in range(len(dataset))]
    with torch.no_grad():
        evaluate(recording, eval_loader(dataset, len(SIZES), workers=0), 3, torch.device("cpu"))
        shapes = [tuple(images.shape[-2:]) for images, _ in calls]
        assert len(set(shapes)) == len(shapes) < len(SIZES)  # one call per size: equal sizes run together
        seen = []
        for images, logits in calls:
            for image, batched in zip(images, logits):
                matches = [i for i, a in enumerate(alone) if a.shape == image.shape and torch.equal(a, image)]
                assert len(matches) == 1  # the image itself, without padding
                seen += matches
                torch.testing.assert_close(batched, predictor(image[None])[0], atol=1e-4, rtol=1e-4)
        assert sorted(seen) == list(range(len(SIZES)))


def test_unpadded_groups_cut_the_padding_and_keep_equal_sizes_together() -> None:
    samples = []
    for index, (height, width) in enumerate([(4, 6), (5, 3), (4, 6)]):
        image = torch.full((3, height, width), index + 1, dtype=torch.uint8)
        samples.append({"image": image, "mask": torch.full((height, width), index, dtype=torch.long), "index": index})
    groups = list(unpadded_groups(collate_eval(samples)))
    assert [tuple(g["image"].shape) for g in groups] == [(2, 3, 4, 6), (1, 3, 5, 3)]
    assert groups[0]["image"][:, 0, 0, 0].tolist() == [1, 3] and groups[1]["mask"].unique().tolist() == [1]
    assert (groups[1]["image"] == 2).all()  # no padding left
    same = collate_eval(samples[:1] * 2)
    assert [g["image"].data_ptr() for g in unpadded_groups(same)] == [same["image"].data_ptr()]  # no copy


def test_size_groups_keep_first_seen_order() -> None:
    assert size_groups([(2, 3), (4, 4), (2, 3), (1, 1)]) == [[0, 2], [1], [3]]
    assert size_groups([]) == []
