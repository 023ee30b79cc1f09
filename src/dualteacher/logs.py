"""Where the library's messages go.

Every module reports through ``logging.getLogger(__name__)``, so all messages (a run's recipe,
each evaluation's mIoU, where a run resumes, data warnings) pass through the ``dualteacher``
logger, which is set to INFO when the package is imported. Routing:

* the ``dualteacher`` command (:func:`console`) writes each message as a plain line to stdout, as
  it always printed them;
* a program that configured no logging (a notebook, a script) gets the same lines from the
  :class:`FallbackHandler` the package installs;
* a program that did configure logging (``logging.basicConfig``, a service's handlers, pytest's
  ``caplog``) receives the records through its own handlers and the fallback steps aside.

``logging.getLogger("dualteacher").setLevel(logging.WARNING)`` keeps only warnings (problems in
the data, a checkpoint skipped, a run of a comparison that failed); progress bars are separate
(``progress=False``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

LOGGER_NAME = "dualteacher"
"""The package's logger, parent of every module's."""


class ConsoleHandler(logging.Handler):
    """Writes each message, formatted ``%(message)s``, to the current ``sys.stdout`` through
    ``tqdm.write``, so that a progress bar on the terminal is redrawn below the line rather than
    broken by it."""

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm.auto import tqdm

            tqdm.write(self.format(record), file=sys.stdout)
            sys.stdout.flush()  # in order with what other processes (compare's runs) write to the same stream
        except Exception:  # logging's contract: report through handleError, never raise
            self.handleError(record)


class FallbackHandler(ConsoleHandler):
    """The package's default handler: a :class:`ConsoleHandler` for programs without logging
    configuration. It writes nothing once the root logger or the ``dualteacher`` logger has
    another handler, which receives the records instead."""

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers or any(h is not self for h in logging.getLogger(LOGGER_NAME).handlers):
            return
        super().emit(record)


def install_fallback() -> None:
    """Set the ``dualteacher`` logger to INFO and give it a :class:`FallbackHandler` (once)."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, FallbackHandler) for h in logger.handlers):
        logger.setLevel(logging.INFO)
        logger.addHandler(FallbackHandler())


@contextmanager
def console(level: int = logging.INFO) -> Iterator[None]:
    """While inside: every message of the package at ``level`` or above goes to stdout as a plain
    line (the ``dualteacher`` command's output); the logger's level and handlers are restored after."""
    logger = logging.getLogger(LOGGER_NAME)
    handler, before = ConsoleHandler(), logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before)
