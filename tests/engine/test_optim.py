"""Parameter groups and the warm-up + poly schedule."""

import pytest
import torch
from torch import nn

from dualteacher.config import OptimConfig
from dualteacher.training.optim import build_optimizer, lr_factor, optimizer_groups, set_lr


class TwoPart(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.head = nn.Conv2d(4, 2, 1)

    def param_groups(self):
        return list(self.enc.parameters()), list(self.head.parameters())


def test_groups_split_head_and_decay() -> None:
    model = TwoPart()
    cfg = OptimConfig(name="sgd", lr=0.01, head_lr_mult=10, weight_decay=1e-4)
    opt = build_optimizer(optimizer_groups(model, cfg), cfg)
    groups = {(g["lr"], g["weight_decay"]): g["params"] for g in opt.param_groups}
    assert groups[(0.01, 1e-4)] == [model.enc[0].weight]
    assert set(map(id, groups[(0.01, 0.0)])) == {id(model.enc[0].bias), id(model.enc[1].weight), id(model.enc[1].bias)}
    assert groups[(0.1, 1e-4)] == [model.head.weight] and groups[(0.1, 0.0)] == [model.head.bias]
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    set_lr(opt, 0.5)
    assert sorted({g["lr"] for g in opt.param_groups}) == [0.005, 0.05]


def test_schedule_warms_up_then_decays_to_zero_at_the_real_end() -> None:
    cfg = OptimConfig(warmup_iters=10, warmup_ratio=0.1, poly_power=1.0)
    assert lr_factor(0, 110, cfg) == pytest.approx(0.1)
    assert lr_factor(5, 110, cfg) == pytest.approx(0.55)
    assert lr_factor(10, 110, cfg) == pytest.approx(1.0)
    assert lr_factor(60, 110, cfg) == pytest.approx(0.5)
    assert lr_factor(110, 110, cfg) == 0.0
    assert lr_factor(60, 110, OptimConfig(poly_power=0.9)) == pytest.approx((1 - 60 / 110) ** 0.9)


def test_adamw_is_default() -> None:
    assert isinstance(build_optimizer(optimizer_groups(TwoPart(), OptimConfig()), OptimConfig()), torch.optim.AdamW)


def test_an_anchored_schedule_decays_from_the_anchor_to_zero_at_the_new_end() -> None:
    cfg = OptimConfig(warmup_iters=10, warmup_ratio=0.1, poly_power=0.9)
    assert all(lr_factor(i, 110, cfg, (10, 1.0)) == lr_factor(i, 110, cfg) for i in range(0, 120, 7))
    anchor = (60, lr_factor(60, 110, cfg))  # the 110-iteration run, resumed at 60 for 160
    assert lr_factor(60, 160, cfg, anchor) == anchor[1]  # no jump at the resume point
    assert lr_factor(110, 160, cfg, anchor) == pytest.approx(anchor[1] * 0.5**0.9)
    assert lr_factor(160, 160, cfg, anchor) == 0.0
    assert lr_factor(5, 160, cfg, anchor) == lr_factor(5, 110, cfg)  # the warm-up is untouched
