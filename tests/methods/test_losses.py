"""Tests for the supervised and pseudo-label cross-entropy losses."""

from __future__ import annotations

from typing import TypedDict

import pytest
import torch

from dualteacher.semi.losses import pseudo_label_loss, supervised_ce

torch.set_num_threads(1)


def _ce(logits: torch.Tensor, b: int, y: int, x: int, label: int) -> float:
    """Hand cross-entropy of one pixel."""
    z = logits[b, :, y, x]
    return (torch.logsumexp(z, 0) - z[label]).item()


class Inputs(TypedDict):
    """The tensor arguments of :func:`pseudo_label_loss`."""

    logits: torch.Tensor
    pseudo: torch.Tensor
    conf: torch.Tensor
    valid: torch.Tensor


@pytest.fixture
def tiny() -> Inputs:
    """Two 1x2 images, 3 classes: pixel values chosen by hand."""
    logits = torch.tensor(
        [
            [[[2.0, 0.0]], [[0.0, 1.0]], [[-1.0, 0.5]]],
            [[[0.3, -2.0]], [[1.5, 0.0]], [[0.0, 2.0]]],
        ]
    )
    pseudo = torch.tensor([[[0, 1]], [[1, 2]]])
    conf = torch.tensor([[[0.99, 0.50]], [[0.96, 0.97]]])
    valid = torch.tensor([[[True, True]], [[True, False]]])
    return {"logits": logits, "pseudo": pseudo, "conf": conf, "valid": valid}


def test_supervised_ce_ignores_index_and_averages_valid() -> None:
    logits = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    target = torch.randint(0, 4, (2, 3, 3), generator=torch.Generator().manual_seed(1))
    target[0, 0, 0] = 255
    target[1, 2] = 255
    expected = sum(
        _ce(logits, b, y, x, int(target[b, y, x]))
        for b in range(2)
        for y in range(3)
        for x in range(3)
        if target[b, y, x] != 255
    ) / int((target != 255).sum())
    assert supervised_ce(logits, target).item() == pytest.approx(expected, rel=1e-5)


def test_supervised_ce_all_ignored_is_zero_and_differentiable() -> None:
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = supervised_ce(logits, torch.full((1, 2, 2), 255))
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros_like(logits))


def test_pixel_mode_hand_computed(tiny: Inputs) -> None:
    # Confident and valid: (0,0) and (1,0); (0,1) is unconfident, (1,1) invalid. Normaliser: 3 valid.
    lg = tiny["logits"]
    expected = (_ce(lg, 0, 0, 0, 0) + _ce(lg, 1, 0, 0, 1)) / 3
    assert pseudo_label_loss(**tiny, mode="pixel").item() == pytest.approx(expected, rel=1e-6)


def test_fraction_mode_hand_computed(tiny: Inputs) -> None:
    # Image 0: 1 of 2 valid pixels confident -> weight 0.5; image 1: 1 of 1 -> weight 1.
    lg = tiny["logits"]
    expected = (0.5 * (_ce(lg, 0, 0, 0, 0) + _ce(lg, 0, 0, 1, 1)) + 1.0 * _ce(lg, 1, 0, 0, 1)) / 3
    assert pseudo_label_loss(**tiny, mode="fraction").item() == pytest.approx(expected, rel=1e-6)


def test_none_mode_hand_computed(tiny: Inputs) -> None:
    lg = tiny["logits"]
    expected = (_ce(lg, 0, 0, 0, 0) + _ce(lg, 0, 0, 1, 1) + _ce(lg, 1, 0, 0, 1)) / 3
    assert pseudo_label_loss(**tiny, mode="none").item() == pytest.approx(expected, rel=1e-6)


def test_threshold_is_inclusive(tiny: Inputs) -> None:
    lg = tiny["logits"]
    at = pseudo_label_loss(**tiny, threshold=0.99, mode="pixel").item()
    assert at == pytest.approx(_ce(lg, 0, 0, 0, 0) / 3, rel=1e-6)


def test_pixel_mode_ignores_low_confidence_pixels(tiny: Inputs) -> None:
    base = pseudo_label_loss(**tiny, mode="pixel")
    changed: Inputs = {**tiny, "logits": tiny["logits"].clone()}
    changed["logits"][0, :, 0, 1] = torch.tensor([9.0, -3.0, 4.0])  # the unconfident pixel
    assert pseudo_label_loss(**changed, mode="pixel").item() == base.item()
    logits = tiny["logits"].clone().requires_grad_(True)
    with_grad: Inputs = {**tiny, "logits": logits}
    pseudo_label_loss(**with_grad, mode="pixel").backward()
    assert logits.grad is not None and torch.equal(logits.grad[0, :, 0, 1], torch.zeros(3))
    assert logits.grad[0, :, 0, 0].abs().sum() > 0


@pytest.mark.parametrize("mode", ["pixel", "fraction", "none"])
def test_invalid_pixels_are_ignored(tiny: Inputs, mode: str) -> None:
    base = pseudo_label_loss(**tiny, mode=mode).item()
    changed: Inputs = {**tiny, "logits": tiny["logits"].clone(), "pseudo": tiny["pseudo"].clone()}
    changed["logits"][1, :, 0, 1] = torch.tensor([50.0, -50.0, 0.0])
    changed["pseudo"][1, 0, 1] = 255  # even an out-of-range label at a padding pixel is harmless
    assert pseudo_label_loss(**changed, mode=mode).item() == base
    logits = tiny["logits"].clone().requires_grad_(True)
    with_grad: Inputs = {**tiny, "logits": logits}
    pseudo_label_loss(**with_grad, mode=mode).backward()
    assert logits.grad is not None and torch.equal(logits.grad[1, :, 0, 1], torch.zeros(3))


@pytest.mark.parametrize("mode", ["pixel", "fraction", "none"])
def test_nothing_valid_gives_finite_zero(tiny: Inputs, mode: str) -> None:
    logits = tiny["logits"].clone().requires_grad_(True)
    args: Inputs = {**tiny, "logits": logits, "valid": torch.zeros_like(tiny["valid"])}
    loss = pseudo_label_loss(**args, mode=mode)
    assert torch.isfinite(loss) and loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_nothing_confident_gives_zero_in_threshold_modes(tiny: Inputs) -> None:
    for mode in ("pixel", "fraction"):
        assert pseudo_label_loss(**tiny, threshold=1.01, mode=mode).item() == 0.0
    assert pseudo_label_loss(**tiny, threshold=1.01, mode="none").item() > 0.0


def test_perfect_prediction_gives_near_zero_loss() -> None:
    pseudo = torch.tensor([[[0, 1], [2, 1]]])
    logits = torch.nn.functional.one_hot(pseudo, 3).permute(0, 3, 1, 2).float() * 50.0
    ones = torch.ones(1, 2, 2)
    loss = pseudo_label_loss(logits, pseudo, ones, ones.bool(), mode="pixel")
    assert 0.0 <= loss.item() < 1e-10


def test_unknown_mode_rejected(tiny: Inputs) -> None:
    with pytest.raises(ValueError):
        pseudo_label_loss(**tiny, mode="soft")
