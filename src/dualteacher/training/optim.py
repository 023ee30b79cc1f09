"""Optimiser with the usual segmentation parameter groups, the warm-up + poly schedule, and the
optimisation step (precision, gradient clipping, NaN guard) the training loop takes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from dualteacher.config import OptimConfig, TrainConfig
from dualteacher.training import distributed

if TYPE_CHECKING:
    from dualteacher.models.contract import SegmentationNetwork


def _split_decay(params: list[nn.Parameter]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Weights get weight decay; biases and normalisation parameters (ndim <= 1) do not."""
    decay = [p for p in params if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in params if p.requires_grad and p.ndim <= 1]
    return decay, no_decay


def optimizer_groups(model: nn.Module, cfg: OptimConfig) -> list[dict[str, Any]]:
    """The optimiser groups of one network: (encoder, head) × (decay, no decay), empty ones left out.

    The head (decoder and classifier) learns ``head_lr_mult`` times faster, as in the papers; the
    split is a :class:`~dualteacher.models.contract.SegmentationNetwork`'s ``param_groups()`` (encoder,
    head), and a module without it is all head. Each group stores its
    ``base_lr`` for :func:`set_lr`.
    """
    if hasattr(model, "param_groups"):
        encoder, head = cast("SegmentationNetwork", model).param_groups()
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
    (:func:`dualteacher.training.resume.continued_anchor`) instead of jumping to the longer schedule's value.
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


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_amp(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device``: ``auto`` is bf16 on CUDA; CPU is always float32 (None)."""
    if device.type != "cuda" or name == "off":
        return None
    return AMP_DTYPES["bf16" if name == "auto" else name]


class Optimization:
    """Back-propagation and the optimiser step over a method's trained networks, in one code path
    for every precision: the GradScaler is enabled for fp16 only, and a disabled one passes the
    loss, the unscaling and the step straight through.

    The NaN guard skips a step whose gradients are not finite and raises once ``max_bad_steps``
    genuine skips come in a row. It costs one device sync per iteration (reading the gradient
    norm's finiteness). With fp16 the scaler decides the skips (it already checks for inf/NaN
    and halves its scale); they count as genuine only once its scale has fallen below 1 (an
    overflow is then no longer the explanation).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        trained: Callable[[], Mapping[str, nn.Module]],
        device: torch.device,
        amp_dtype: torch.dtype | None,
        optim: OptimConfig,
        train: TrainConfig,
    ) -> None:
        self.optimizer = optimizer
        self.trained = trained
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
        self.grad_clip = optim.grad_clip
        self.nan_guard = train.nan_guard
        self.max_bad_steps = train.max_bad_steps
        self.bad_in_a_row = 0  # genuine skips since the last step taken; not checkpointed

    def step(self, loss: Tensor, parts: dict[str, Tensor], iteration: int) -> bool:
        """Back-propagate ``loss`` and step the optimiser; False if the step was skipped."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        norm = self._clip(self._synced_parameters())
        scale = self.scaler.get_scale()  # a disabled scaler's is always 1.0
        # with the scaler on, its own inf/NaN check decides (a second check would cost a sync)
        if not self.scaler.is_enabled() and self.nan_guard and norm is not None and not bool(torch.isfinite(norm)):
            stepped = False
        else:
            self.scaler.step(self.optimizer)  # skips by itself on inf/NaN gradients
            self.scaler.update()
            stepped = self.scaler.get_scale() >= scale  # the scale falls exactly when it skipped
        if not stepped:
            self._skipped(loss, parts, iteration)
        else:
            self.bad_in_a_row = 0
        return stepped

    def _synced_parameters(self) -> list[nn.Parameter]:
        """After the backward pass: the trained networks' buffers averaged over ranks (DDP; before
        the teachers' EMA reads them), and their parameters that received a gradient."""
        trained = self.trained().values()
        for module in trained:
            distributed.average_buffers(module)
        return [p for module in trained for p in module.parameters() if p.grad is not None]

    def _clip(self, params: list[nn.Parameter]) -> Tensor | None:
        """Clip to ``grad_clip`` (on unscaled gradients) and return the total norm; without
        clipping, the norm only when the guard reads it."""
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            return nn.utils.clip_grad_norm_(params, self.grad_clip)
        if self.nan_guard and not self.scaler.is_enabled():
            return nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        return None

    def _skipped(self, loss: Tensor, parts: dict[str, Tensor], iteration: int) -> None:
        """Drop the bad gradients; stop the run after ``max_bad_steps`` genuine skips in a row."""
        self.optimizer.zero_grad(set_to_none=True)
        genuine = not self.scaler.is_enabled() or self.scaler.get_scale() < 1.0
        self.bad_in_a_row = self.bad_in_a_row + 1 if genuine else 0
        if self.bad_in_a_row >= self.max_bad_steps:
            terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in {"loss": loss, **parts}.items())
            raise FloatingPointError(
                f"{self.bad_in_a_row} steps in a row with non-finite gradients, the last at iteration "
                f"{iteration} ({terms}); the last good checkpoint is untouched"
            )
