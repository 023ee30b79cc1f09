"""Griffe extension for the API reference: the package's docstrings cross-reference in Sphinx's
style (``:func:`load_model```, ``:class:`~dualteacher.config.Config```) while mkdocstrings renders
Markdown, so each role becomes inline code of the name as Sphinx would show it."""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")
"""A Sphinx cross-reference role; group 1 is ``~`` (show the last name only), group 2 the target."""


def shown(match: re.Match[str]) -> str:
    """The role as inline code: the target, or its last dotted name after ``~``."""
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring's Sphinx roles when griffe loads an object."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(shown, obj.docstring.value)
