"""Where emit writes: names made from ids, targets the stage owns, and outputs that replace the old one whole.

A file (NDJSON, GeoParquet) is written under a temporary name beside the target and renamed over it. A local JSON
tree is written into a hidden sibling folder and switched in whole (:mod:`stacbatch.emit._swap`). A tree folder
carries a marker (:data:`MARKER`) saying stacbatch wrote it: emit replaces only a missing or empty folder, one with
the marker, or any folder with ``force``. Object stores have no rename: new objects are written over the old, and
the ones the new tree does not name are deleted last.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from typing import Any

import orjson

from stacbatch.emit import _swap
from stacbatch.engine import _fs
from stacbatch.engine._orphan import alive
from stacbatch.engine._version import VERSION
from stacbatch.errors import InputError
from stacbatch.stage import Stage

#: The tree's marker file. No ``.json`` suffix: loading the tree as a folder must not read it as a document.
MARKER = ".stacbatch-tree"
#: The tree's own file names: an id that encodes to one of them gets a hashed name instead.
TREE_NAMES = frozenset({"catalog.json", "collection.json"})


def kill_point(name: str) -> None:
    """Test hook: ``STACBATCH_CRASH_AT=name`` sends this process SIGKILL here."""
    if os.environ.get("STACBATCH_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


# -- targets the stage owns -------------------------------------------------------------------------------------


def refuse_stage_target(stage: Stage, fs: Any, path: str, to: str, *, replaces_folder: bool = False) -> None:
    """An output inside the stage would be deleted by its next write (the stage removes files it does not know);
    a tree is a folder emit replaces whole, so it must not hold the stage either."""
    if type(fs) is not type(stage.fs):
        return
    if _fs.is_local(fs):
        target, root = os.path.realpath(path), os.path.realpath(stage.root)
    else:
        target, root = path.rstrip("/"), stage.root.rstrip("/")
    if target == root or target.startswith(root.rstrip("/") + "/"):
        raise InputError(
            f"--to {to}: inside the stage {stage.path}, which deletes files it does not know; emit outside it"
        )
    if replaces_folder and root.startswith(target.rstrip("/") + "/"):
        raise InputError(
            f"--to {to}: holds the stage {stage.path}, and a JSON tree replaces its whole folder; emit elsewhere"
        )


# -- files ------------------------------------------------------------------------------------------------------


def remove_stale_tmp(fs: Any, path: str) -> None:
    """Remove ``<path>.tmp-<pid>`` files that a killed emit left (their process is gone)."""
    if not _fs.is_local(fs):
        return
    folder, base = os.path.split(path)
    prefix = f"{base}.tmp-"
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for name in os.listdir(folder or "."):
            pid = _swap.pid_of(name[len(prefix) :]) if name.startswith(prefix) else None
            if pid is not None and pid != os.getpid() and not alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))


@contextlib.contextmanager
def file_output(fs: Any, path: str) -> Iterator[Any]:
    """A binary file that replaces ``path`` only once complete (see :func:`stacbatch.engine._fs.atomic_output`)."""
    remove_stale_tmp(fs, path)
    with _fs.atomic_output(fs, path) as f:
        yield f
        kill_point("emit:file_before_switch")


@contextlib.contextmanager
def local_file_output(fs: Any, path: str) -> Iterator[str]:
    """A local path for a writer that wants a file name (pyarrow); its file replaces ``path`` once complete.

    Local targets: a temporary sibling, renamed. Object stores: a local temporary file, uploaded at the end (an
    upload killed midway publishes nothing).
    """
    import tempfile

    remove_stale_tmp(fs, path)
    if _fs.is_local(fs):
        tmp = f"{path}.tmp-{os.getpid()}"
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    else:
        tmp = os.path.join(tempfile.mkdtemp(prefix="stacbatch-emit-"), "out")
    try:
        yield tmp
        kill_point("emit:file_before_switch")
        if _fs.is_local(fs):
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            fs.put_file(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if not _fs.is_local(fs):
            shutil.rmtree(os.path.dirname(tmp), ignore_errors=True)


# -- trees ------------------------------------------------------------------------------------------------------


def _check_tree_target(fs: Any, root: str, to: str, force: bool) -> None:
    if not fs.exists(root):
        return
    if not fs.isdir(root):
        raise InputError(f"--to {to}: is a file; a JSON tree is written into a folder")
    if fs.exists(_fs.join(root, MARKER)) or force:
        return
    if fs.ls(root, detail=False):
        raise InputError(
            f"--to {to}: folder is not empty and not an earlier stacbatch tree (no {MARKER}); choose another "
            "folder, or pass --force to replace it (its contents are deleted)"
        )


def _marker(items: int, collections: int) -> bytes:
    return orjson.dumps(
        {
            "written_by": f"stacbatch {VERSION}",
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "root": "catalog.json",
            "items": items,
            "collections": collections,
        },
        option=orjson.OPT_INDENT_2,
    )


@contextlib.contextmanager
def tree_output(fs: Any, root: str, to: str, *, force: bool) -> Iterator[TreeWriter]:
    """Yield a :class:`TreeWriter` whose ``root`` is where to write the new tree; on success the tree at ``root``
    becomes exactly the new one (see the module docstring)."""
    if _fs.is_local(fs):
        root = os.path.realpath(root)
        os.makedirs(os.path.dirname(root) or ".", exist_ok=True)
        _swap.recover(root)
        _check_tree_target(fs, root, to, force)
        work = _swap.sibling(root, "new")
        os.mkdir(work)
        writer = TreeWriter(work, local=True)
        try:
            yield writer
            _fs.atomic_write_bytes(fs, _fs.join(work, MARKER), _marker(writer.items, writer.collections))
            _swap.syncfs(work)
            kill_point("emit:tree_before_switch")
            _swap.switch(work, root, kill_point)
        finally:
            if os.path.lexists(work):  # the write failed: its partial tree goes
                _swap.discard(root, work)
        return
    root = root.rstrip("/")
    _check_tree_target(fs, root, to, force)
    # Claim the folder first: a run killed midway leaves a folder the next emit may replace without --force.
    _fs.atomic_write_bytes(fs, _fs.join(root, MARKER), _marker(0, 0))
    writer = TreeWriter(root, local=False)
    yield writer
    _fs.atomic_write_bytes(fs, _fs.join(root, MARKER), _marker(writer.items, writer.collections))
    keep = {_fs.join(root, MARKER)} | writer.written
    stale = [p for p in fs.find(root) if p not in keep]
    if stale:
        fs.rm(stale)


class TreeWriter:
    """Where the tree is written, and (object stores) which files it names."""

    def __init__(self, root: str, *, local: bool) -> None:
        #: The folder to write the tree into (a temporary sibling of the target for local trees).
        self.root = root
        self.local = local
        self.items = 0
        self.collections = 0
        #: Object stores only: every file written, to delete the others afterwards.
        self.written: set[str] = set()

    def track(self, paths: list[str]) -> None:
        if not self.local:
            self.written.update(paths)
