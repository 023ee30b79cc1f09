"""Optimiser with the usual segmentation parameter groups, and the warm-up + poly schedule."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .config import OptimConfig


def _split_decay(params: list[nn.Parameter]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Weights get weight decay; biases and normalisation parameters (ndim <= 1) do not."""
    decay = [p for p in params if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in params if p.requires_grad and p.ndim <= 1]
    return decay, no_decay


def optimizer_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """The optimiser groups of one network: (encoder, head) × (decay, no decay), empty ones left out.

    The head (decoder and classifier) learns ``head_lr_mult`` times faster, as in the papers; a
    network without ``param_groups()`` (encoder, head) is all head. Each group stores its
    ``base_lr`` for :func:`set_lr`.
    """
    if hasattr(model, "param_groups"):
        encoder, head = model.param_groups()
    else:
        encoder, head = [], list(model.parameters())
    groups = []
    for params, mult in ((encoder, 1.0), (head, cfg.head_lr_mult)):
        decay, no_decay = _split_decay(list(params))
        for group, wd in ((decay, cfg.weight_decay), (no_decay, 0.0)):
            if group:
                groups.append({"params": group, "weight_decay": wd, "lr": cfg.lr * mult, "base_lr": cfg.lr * mult})
    return groups


def build_optimizer(groups: list[dict[str, Any]], cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD over ``groups`` (e.g. :func:`optimizer_groups`, or a method's own)."""
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def lr_factor(iteration: int, total: int, cfg: OptimConfig, anchor: tuple[int, float] | None = None) -> float:
    """Linear warm-up from ``warmup_ratio`` over ``warmup_iters``, then poly decay to 0 at ``total``.

    The decay starts from factor 1 at ``warmup_iters``, or, with ``anchor = (start, factor)``, from
    ``factor`` at iteration ``start``: a run resumed with another length continues from the LR it had
    (:func:`dualteacher.resume.continued_anchor`) instead of jumping to the longer schedule's value.
    """
    start, peak = anchor if anchor is not None else (cfg.warmup_iters, 1.0)
    if iteration < cfg.warmup_iters:
        return cfg.warmup_ratio + (1.0 - cfg.warmup_ratio) * iteration / cfg.warmup_iters
    span = max(total - start, 1)
    progress = min(max(iteration - start, 0) / span, 1.0)
    return peak * (1.0 - progress) ** cfg.poly_power


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Scale every group's ``base_lr`` by ``factor``; return the first group's LR (for logging)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return optimizer.param_groups[0]["lr"]
