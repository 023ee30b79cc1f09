"""Training methods, each one readable file, registered by name in
:data:`~dualteacher.registry.METHODS`; :func:`build_method` builds the configured one."""

from __future__ import annotations

from dualteacher.methods.base import Batch, Method, MethodContext
from dualteacher.registry import METHODS


def build_method(ctx: MethodContext) -> Method:
    """Instantiate the method named in ``ctx.cfg.name``."""
    return METHODS.get(ctx.cfg.name)(ctx)


__all__ = ["Batch", "Method", "MethodContext", "build_method"]
