"""Training methods, each one readable file; :func:`build_method` picks one by name."""

from __future__ import annotations

from .base import Batch, Method, MethodContext
from .dual_teacher import DualTeacher
from .fixmatch import FixMatch
from .mean_teacher import MeanTeacher
from .supervised import Supervised
from .unimatch import UniMatch

METHODS: dict[str, type[Method]] = {
    "supervised": Supervised,
    "mean_teacher": MeanTeacher,
    "dual_teacher": DualTeacher,
    "fixmatch": FixMatch,
    "unimatch": UniMatch,
}


def build_method(ctx: MethodContext) -> Method:
    """Instantiate the method named in ``ctx.cfg.name``."""
    return METHODS[ctx.cfg.name](ctx)


__all__ = ["Batch", "Method", "MethodContext", "METHODS", "build_method"]
