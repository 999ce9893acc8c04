"""Filesystem access through fsspec, so the stage and sources can move to S3 without code changes."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


def filesystem(path: str) -> tuple[Any, str]:
    """Return (fsspec filesystem, path without protocol) for a local path or URL."""
    # url_to_fs takes the path as it is: get_fs_token_paths expanded glob characters (a pattern matching nothing
    # crashed, one matching several kept only the first)
    fs, stripped = fsspec.core.url_to_fs(path)
    return fs, stripped


def is_local(fs: Any) -> bool:
    return isinstance(fs, LocalFileSystem)


def join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts if p)


def atomic_write_bytes(fs: Any, path: str, data: bytes) -> None:
    """Write ``data`` so that readers see the old content or the new, never a partial file.

    Local: write a temporary sibling, fsync, ``os.replace``. Object stores: a single PUT is already atomic.
    """
    if is_local(fs):
        tmp = f"{path}.tmp-{os.getpid()}"
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(os.path.dirname(path) or ".")
    else:
        with fs.open(path, "wb") as f:
            f.write(data)


@contextlib.contextmanager
def atomic_sink(fs: Any, path: str) -> Iterator[Any]:
    """A binary file to stream into that appears at ``path`` only when complete (a temporary sibling renamed on
    success, removed on failure); object stores publish on close, which is atomic already."""
    if not is_local(fs):
        with fs.open(path, "wb") as f:
            yield f
        return
    tmp = f"{path}.tmp-{os.getpid()}"
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_output(fs: Any, path: str) -> Iterator[Any]:
    """:func:`atomic_sink`, and on object stores a write that fails publishes nothing: closing an fsspec file
    uploads what it holds, so a failed one is discarded (an unfinished multipart upload aborted) and never closed."""
    if is_local(fs):
        with atomic_sink(fs, path) as f:
            yield f
        return
    f = fs.open(path, "wb")
    try:
        yield f
    except BaseException:
        discard = getattr(f, "discard", None)
        if callable(discard):
            discard()
        with contextlib.suppress(AttributeError):  # fsspec's buffered files would upload when garbage-collected
            f.closed = True
        raise
    f.close()


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def full_path(fs: Any, path: str) -> str:
    """A path another library can open: plain for local files, ``proto://...`` otherwise."""
    return path if is_local(fs) else str(fs.unstrip_protocol(path))
