"""Ordered, bounded parallel map over worker processes (or inline when parallelism would not pay)."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor


def default_workers() -> int:
    return max(
        1,
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
    )


def _main_importable() -> bool:
    """Worker processes re-import the parent's ``__main__`` from its file; a script read from stdin or ``-c``
    has none on disk, and the workers would die. Parse inline then."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.exists(main_file)


def ordered_map[T, R](fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` processes, results in input order, at most ``2*workers`` in flight.

    The bound keeps memory flat however long the input; order keeps "last wins" deterministic.
    """
    if workers <= 1 or not _main_importable():
        yield from map(fn, items)
        return
    # forkserver: forking a process that runs DuckDB/Arrow thread pools is unsafe.
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
