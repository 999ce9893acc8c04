"""Arrow tables handed to worker processes through a memory-mapped file instead of the pool's pipe.

Pickled in-band, a batch of records was copied four times on its way to a worker (into the pickle, through the
pipe twice, out of the pickle) and its pickle grew by reallocation: ~7% of a 1M-row mapped load's CPU (perf).
Here the sending side writes the table once as an Arrow IPC file, preferably on a RAM file system (``/dev/shm``),
and the worker memory-maps it: its columns are read where they lie. The worker unlinks the file as soon as it is
mapped; the folder goes when the sending process exits, with any file a cancelled job never read (and a killed
process's folder when the next one starts).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
import uuid
from typing import Any

import pyarrow as pa

from stacbatch.engine._orphan import alive

#: a RAM file system is used when it has this much room (Docker's default /dev/shm is only 64 MB)
_SHM_MIN_FREE = 1 << 30

_lock = threading.Lock()
_folder: str | None = None


def process_folder() -> str:
    """This process's own folder (RAM file system when roomy): removed at exit, and by the next process when this
    one was killed before it could."""
    return _make_folder()


def _make_folder() -> str:
    global _folder
    with _lock:
        if _folder is None or not os.path.isdir(_folder):
            base = None
            with contextlib.suppress(OSError):
                st = os.statvfs("/dev/shm")
                if st.f_bavail * st.f_frsize >= _SHM_MIN_FREE and os.access("/dev/shm", os.W_OK):
                    base = "/dev/shm"
            _remove_orphans(base or tempfile.gettempdir())
            _folder = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=base)
            atexit.register(shutil.rmtree, _folder, True)
        return _folder


_PREFIX = "stacbatch-handoff-"


def _remove_orphans(base: str) -> None:
    """Folders left by processes that were killed before their exit handlers ran (named by their process id)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            pid = name[len(_PREFIX) :].split("-", 1)[0] if name.startswith(_PREFIX) else ""
            if pid.isdigit() and not alive(int(pid)):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def dump(table: Any) -> Any:
    """What to pickle for ``table``: the path of an Arrow IPC file holding it, or the table itself (pickled
    in-band) when it is not an Arrow table or the file cannot be written."""
    if not isinstance(table, pa.Table):
        return table
    path = os.path.join(_make_folder(), f"{uuid.uuid4().hex}.arrow")
    try:
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
    except (OSError, pa.ArrowException):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return table
    return _Ref(path)


class _Ref:
    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


def load(ref: Any) -> Any:
    """The table ``dump`` handed over: memory-mapped (the file is unlinked at once; the mapping keeps its pages
    until the table goes)."""
    if not isinstance(ref, _Ref):
        return ref
    try:
        return pa.ipc.open_file(pa.memory_map(ref.path)).read_all()
    finally:
        with contextlib.suppress(OSError):
            os.unlink(ref.path)
