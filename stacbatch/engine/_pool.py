"""Ordered, bounded parallel map over worker processes (or inline when parallelism would not pay)."""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any


def default_workers() -> int:
    return max(
        1,
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1),
    )


def main_importable() -> bool:
    """Worker processes re-import the parent's ``__main__`` from its file; a script read from stdin or ``-c``
    has none on disk, and the workers would die. Parse inline then."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.exists(main_file)


#: Environment of the fork server, and so of every worker. mimalloc (Arrow's allocator) gives freed pages back to
#: the system 10 ms after they free up; a worker then faults its batch's ~100 MB in again for every batch (page
#: faults are costly on VMs). Kept 5 s instead: a 1M-row mapped load went from ~560k to ~400-475k page faults
#: (perf stat, 2026-11-26; time within noise), peak memory unchanged within noise. A value the user set is kept.
_WORKER_ENV = {"MIMALLOC_PURGE_DELAY": "5000"}


@contextlib.contextmanager
def _worker_env() -> Iterator[None]:
    """``_WORKER_ENV`` set while the fork server starts (it copies the environment then), this process's own
    environment left as it was."""
    from stacbatch.engine._orphan import ENV

    wanted = {**_WORKER_ENV, ENV: str(os.getpid())}
    added = [k for k in wanted if k not in os.environ]
    os.environ.update({k: wanted[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def start_fork_server(preload: list[str] | None = None) -> None:
    """Start multiprocessing's fork server now (idempotent), importing ``preload`` modules in it first."""
    from multiprocessing import forkserver

    from stacbatch.engine import _handoff

    # multiprocessing's own temporary folder (the fork server's socket) would be a /tmp/pymp-* that outlives a
    # killed process; our per-process folder is removed at exit, and a killed process's by the next one
    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    config.setdefault("tempdir", _handoff.process_folder())
    if preload is not None:
        forkserver.set_forkserver_preload(preload)
    with _worker_env():
        forkserver.ensure_running()


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def _libc() -> Any:
    if sys.platform != "linux":
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018  # glibc only (musl has neither)
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep blocks of up to 32 MB in the heap, and keep up to 256 MB freed there for reuse.

    A parse worker allocates and frees tens of megabytes per unit of input; by default glibc hands each such block
    to the kernel with mmap and back with munmap, and every reuse then faults and zeroes fresh pages (measured: a
    quarter of a parse worker's time). ``release_freed_memory`` gives it back when a different phase begins.
    Returns whether the settings took (False off glibc).
    """
    libc = _libc()
    if libc is None:
        return False
    # mallopt returns 1 on success
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024) and libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20))


def release_freed_memory() -> None:
    """Return the heap kept by ``keep_freed_memory`` to the system (Arrow's own allocator cannot reuse it). The
    kernel's spare block goes first (``stacbatch.kernel._scan.drop_spare``)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _init_worker(keep_heap: bool) -> None:
    from stacbatch.engine._orphan import watch_main

    watch_main()  # a worker is forked from the fork server: the server's watching thread did not come along
    if keep_heap:
        keep_freed_memory()
    without_pandas()


def without_pandas() -> None:
    """Tell pyarrow, once, that pandas is not there, unless it is imported already.

    pyarrow checks for pandas on its first conversion of any Python value (``pa.scalar(1)``, a list, a literal
    argument of a compute function) by importing it: half a second per worker process, for nothing, as no
    stacbatch code path hands it pandas objects. Its check runs once and, failing, is not repeated for internal
    uses, while explicit pandas conversions (``to_pandas``) still import it. Only costs, never changes results.
    """
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    sys.meta_path.insert(0, _NoPandas)
    try:
        pa.scalar(0, pa.int64())  # the Python-side check
        pa.scalar(0)  # the C++ converter's own (type inference)
    finally:
        sys.meta_path.remove(_NoPandas)


class _NoPandas:
    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas":
            raise ImportError("pandas is not used here")


#: ``load``'s own threshold for parsing in workers (stage/_load.py PARALLEL_MIN_BYTES)
PREFORK_MIN_BYTES = 16 * 1024 * 1024


class Workers:
    """A pool of worker processes, started on first use and shared by the phases of one command (parsing, then
    writing partitions), so each worker pays its start-up and imports once. With ``workers <= 1`` (or no importable
    ``__main__``) everything runs inline."""

    def __init__(self, workers: int, *, keep_heap: bool = False) -> None:
        self.workers = workers if main_importable() else 1
        #: ``keep_freed_memory`` in the workers: for many same-sized allocations (parsing units); rewriting files
        #: gained nothing from it and held ~200 MB more per worker
        self.keep_heap = keep_heap
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @property
    def parallel(self) -> bool:
        return self.workers > 1

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: forking a process that runs DuckDB/Arrow thread pools is unsafe.
            ctx = multiprocessing.get_context("forkserver")
            start_fork_server()
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx, initializer=_init_worker, initargs=(self.keep_heap,)
            )
        return self._pool

    def ordered_map[T, R](self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """``map(fn, items)`` on the workers, results in input order, at most ``2*workers`` in flight.

        The bound keeps memory flat however long the input; order keeps "last wins" deterministic.
        """
        if not self.parallel:
            yield from map(fn, items)
            return
        pool = self._executor()
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * self.workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()


def ordered_map[T, R](fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``Workers.ordered_map`` on a pool of its own."""
    with Workers(workers) as pool:
        yield from pool.ordered_map(fn, items)
