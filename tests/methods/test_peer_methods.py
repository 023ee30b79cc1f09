"""FixMatch and UniMatch: end-to-end runs, the feature-perturbation stream and the dual strong views."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from dualteacher.checkpoint import load_checkpoint
from dualteacher.config import ConfigError, load_config
from dualteacher.methods import Batch, MethodContext, build_method
from dualteacher.methods.unimatch import UniMatchSettings
from dualteacher.models.smp import build_model
from dualteacher.runlog import read_log
from dualteacher.semi.features import channel_dropout
from dualteacher.training.loop import train

from conftest import tiny_overrides

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "terms"),
    [
        ("fixmatch", {"loss_sup", "loss_mix", "confident"}),
        ("unimatch", {"loss_sup", "loss_fp", "loss_s1", "loss_s2", "confident"}),
    ],
)
def test_runs_end_to_end_with_one_network(tiny_data, tmp_path: Path, method: str, terms: set[str]) -> None:
    record = train(
        load_config(None, tiny_overrides(tiny_data, tmp_path, method, method__threshold=0.5)), progress=False
    )
    assert 0.0 <= record["student/miou"] <= 1.0
    assert not [k for k in record if k.endswith("/miou") and not k.startswith("student")]
    logs = read_log(tmp_path)
    steps = [r for r in logs if r["type"] == "train"]
    assert len(steps) == 6 and all(terms <= set(r) for r in steps)
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    # with a 0.5 threshold some unlabelled pixels pass, so the unlabelled terms really train
    assert any(r["confident"] > 0 for r in steps)
    assert sum(r.get("loss_mix", 0.0) + r.get("loss_s1", 0.0) for r in steps) > 0
    seconds = [r["train_seconds"] for r in logs if r["type"] == "eval"]
    assert seconds == sorted(seconds) and seconds[0] > 0
    tensors, _ = load_checkpoint(tmp_path / "last.safetensors")
    assert {k.split("/")[1] for k in tensors if k.startswith("model/")} == {"student"}


def _unimatch(threshold: float = 0.0) -> tuple:
    torch.manual_seed(0)
    cfg = UniMatchSettings(name="unimatch", threshold=threshold)

    def build(drop_path: float):
        return build_model("deeplabv3plus", "tu-tf_efficientnet_lite0", 5, decoder_channels=16, drop_path=drop_path)

    method = build_method(MethodContext(cfg=cfg, build=build, num_classes=5, mean=MEAN, std=STD, labeled_pass=1))
    method.student.train()
    labeled = Batch(torch.rand(2, 3, 32, 32), mask=torch.randint(0, 5, (2, 32, 32)))
    unlabeled = Batch(torch.rand(3, 3, 32, 32), valid=torch.ones(3, 32, 32, dtype=torch.bool))
    return method, labeled, unlabeled


def test_feature_perturbation_drops_channels_only_in_its_own_stream() -> None:
    method, labeled, unlabeled = _unimatch()
    model = method.student
    seen: list[list[torch.Tensor]] = []
    decode = model.decode

    def recording_decode(feats: list[torch.Tensor], size: tuple[int, int] | None = None) -> torch.Tensor:
        seen.append([f.detach().clone() for f in feats])
        return decode(feats, size)

    model.decode = recording_decode
    method.step(labeled, unlabeled, torch.Generator().manual_seed(0))
    clean, perturbed = seen[0], seen[1]
    with torch.no_grad():
        reference = model.features(method.norm(torch.cat([labeled.image, unlabeled.image])))
    dropped_planes = kept_planes = 0
    for f_clean, f_ref, f_fp in zip(clean, reference, perturbed):
        # the clean stream decodes the encoder's features untouched, for labelled and weak images
        assert torch.allclose(f_clean, f_ref, atol=1e-5)
        # the FP stream holds only the unlabelled images, each channel either zeroed or scaled by 2
        assert f_fp.shape[0] == unlabeled.image.shape[0]
        if f_fp.shape[1] == 0:
            continue
        source = f_clean[labeled.image.shape[0] :]
        zero = f_fp.flatten(2).abs().amax(2) == 0
        assert torch.allclose(f_fp.flatten(2)[~zero], 2 * source.flatten(2)[~zero], atol=1e-5)
        dropped_planes += int((zero & (source.flatten(2).abs().amax(2) > 0)).sum())
        kept_planes += int((~zero).sum())
    assert dropped_planes > 0 and kept_planes > 0
    assert 0.35 < dropped_planes / (dropped_planes + kept_planes) < 0.65
    # the third decode is the strong views' pass: untouched features of 2 x 3 images
    assert len(seen) == 3 and seen[2][-1].shape[0] == 2 * unlabeled.image.shape[0]


def test_the_two_strong_views_differ_in_photometry_and_mixing() -> None:
    method, labeled, unlabeled = _unimatch()
    inputs: list[torch.Tensor] = []

    def recording(net: torch.nn.Module) -> Callable[..., Any]:
        def forward(x: torch.Tensor, **kw: Any) -> Any:
            inputs.append(x.detach().clone())
            return net(x, **kw)

        return forward

    method.wrap(recording)
    _, parts = method.step(labeled, unlabeled, torch.Generator().manual_seed(3))
    assert len(inputs) == 2
    view1, view2 = inputs[1].chunk(2)
    weak = inputs[0][labeled.image.shape[0] :]
    assert not torch.allclose(view1, view2) and not torch.allclose(view1, weak) and not torch.allclose(view2, weak)
    # at threshold 0 every pixel teaches; the two views see different mixes, so different losses
    assert not torch.isclose(parts["loss_s1"], parts["loss_s2"])


def test_step_is_reproducible_from_the_generator() -> None:
    losses = []
    for _ in range(2):
        method, labeled, unlabeled = _unimatch()
        loss, _ = method.step(labeled, unlabeled, torch.Generator().manual_seed(7))
        losses.append(loss.detach())
    assert torch.equal(losses[0], losses[1])


def test_channel_dropout_is_dropout2d_from_a_generator() -> None:
    features = [torch.ones(4, 64, 3, 3), torch.ones(4, 0, 2, 2), torch.ones(4, 8, 5)]
    a = channel_dropout(features, 0.5, torch.Generator().manual_seed(0))
    b = channel_dropout(features, 0.5, torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert set(a[0].unique().tolist()) == {0.0, 2.0}
    assert a[1].shape == (4, 0, 2, 2) and a[2].shape == (4, 8, 5)
    # whole channels: every spatial position of a plane shares the decision
    assert torch.all(a[0].amax((2, 3)) == a[0].amin((2, 3)))
    assert torch.equal(channel_dropout(features, 0.0, torch.Generator())[0], features[0])
    with pytest.raises(ValueError, match="channel dropout"):
        channel_dropout(features, 1.0, torch.Generator())


def test_forward_with_perturbation_returns_clean_and_perturbed_logits() -> None:
    torch.manual_seed(0)
    model = build_model("deeplabv3plus", "tu-tf_efficientnet_lite0", 3, decoder_channels=16).eval()
    x = torch.randn(2, 3, 40, 40)
    clean, perturbed = model(x, perturb=lambda feats: [torch.zeros_like(f) for f in feats])
    assert torch.allclose(clean, model(x)) and clean.shape == perturbed.shape == (2, 3, 40, 40)
    assert not torch.allclose(clean, perturbed)


def test_fp_dropout_is_validated() -> None:
    with pytest.raises(ConfigError, match="method.fp_dropout"):
        load_config(None, ["method.name=unimatch", "method.fp_dropout=1.0"])
