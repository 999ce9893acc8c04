"""Progress reports from long operations, to whoever shows them (the CLI draws rich bars on a terminal).

An operation calls ``phase`` when a stretch of work begins (with its total when known), then ``advance`` as it
goes. Reports go to the ``Progress`` made current by ``reporting`` (a context variable, so the layers that do the
work need no extra parameter); by default that is a ``Progress`` that ignores them, so library callers that ask
for nothing pay nothing and see nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar


class Progress:
    """A sink for progress reports; this base class ignores them. Subclass it to show them."""

    def phase(self, name: str, total: int | None = None, unit: str = "items") -> None:
        """A stretch of work begins: ``name`` (e.g. "emit ndjson"), ``total`` units (None: unknown)."""

    def advance(self, n: int = 1) -> None:
        """``n`` more units of the current phase are done."""

    def total(self, total: int | None) -> None:
        """The current phase's total, once known (e.g. from a STAC API's numberMatched)."""

    def detail(self, text: str) -> None:
        """A short note beside the current phase (e.g. the pages, requests and retries of an API load)."""

    def finish(self) -> None:
        """Stop showing progress (a summary is about to be printed); the next ``phase`` shows it again."""


_SILENT = Progress()  # stateless: one is enough
_CURRENT: ContextVar[Progress | None] = ContextVar("stacbatch_progress", default=None)


def current() -> Progress:
    """Where the operation running now reports its progress."""
    return _CURRENT.get() or _SILENT


@contextlib.contextmanager
def reporting(progress: Progress) -> Iterator[Progress]:
    """Send the progress of the operations run inside the block to ``progress``."""
    token = _CURRENT.set(progress)
    try:
        yield progress
    finally:
        _CURRENT.reset(token)
