"""Replace a local folder whole: the new content is built in a hidden sibling and switched in.

The switch exchanges the two folders in one step (Linux ``renameat2(RENAME_EXCHANGE)``), so at every moment the
target holds the old folder or the new one, complete. Where folders cannot be exchanged it is two renames; a kill
between them leaves the target missing and the old folder beside it, and :func:`recover` (run by the next emit)
puts it back. The replaced folder is renamed to a ``trash`` sibling and deleted in the background: on some file
systems deleting a tree of small files takes far longer than writing it.

Siblings are named ``.<name>~<hash>.stacbatch-<kind>-<pid>-<token>`` (kind ``new``, ``old`` or ``trash``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable

from stacbatch.engine import _fs
from stacbatch.engine._orphan import alive


def _prefix(root: str) -> str:
    parent, base = os.path.split(root)
    tag = hashlib.sha256(base.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return os.path.join(parent, f".{base[:60]}~{tag}.stacbatch-")  # short enough for any target name


def sibling(root: str, kind: str) -> str:
    return f"{_prefix(root)}{kind}-{os.getpid()}-{os.urandom(4).hex()}"


def pid_of(rest: str) -> int | None:
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def _siblings(root: str) -> list[tuple[str, str, int | None]]:
    """(path, kind, pid) of the siblings earlier switches of ``root`` made."""
    parent, start = os.path.split(_prefix(root))
    found = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(parent or "."):
            if name.startswith(start):
                kind, _, rest = name[len(start) :].partition("-")
                found.append((os.path.join(parent, name), kind, pid_of(rest)))
    return found


def recover(root: str) -> None:
    """Undo what a killed switch left: put the old folder back if the target is missing, and delete the siblings
    of processes that are gone (trash siblings always: their deleter may have been killed too)."""
    mine = os.getpid()
    left = [(p, k) for p, k, pid in _siblings(root) if k == "trash" or (pid not in (None, mine) and not alive(pid))]
    if not os.path.lexists(root):
        olds = sorted((p for p, k in left if k == "old"), key=os.path.getmtime)
        if olds:
            os.rename(olds[-1], root)
            _fs.fsync_dir(os.path.dirname(root) or ".")
            left = [(p, k) for p, k in left if p != olds[-1]]
    for path, kind in left:
        if kind == "trash":
            remove_in_background(path)
        else:
            discard(root, path)


def switch(new: str, root: str, kill_point: Callable[[str], None]) -> None:
    """Make ``new`` the folder at ``root``; the old one is deleted in the background."""
    if not os.path.lexists(root):
        os.rename(new, root)
    elif exchange(new, root):
        kill_point("emit:tree_after_switch")
        discard(root, new)  # the old folder, now under the temporary name
    else:
        old = new.replace(".stacbatch-new-", ".stacbatch-old-", 1)
        os.rename(root, old)
        kill_point("emit:tree_between_renames")
        os.rename(new, root)
        kill_point("emit:tree_after_switch")
        discard(root, old)
    _fs.fsync_dir(os.path.dirname(root) or ".")


def discard(root: str, path: str) -> None:
    trash = sibling(root, "trash")
    os.rename(path, trash)
    remove_in_background(trash)


def remove_in_background(path: str) -> None:
    """``rm -rf`` in a process of its own session that outlives us (the shell exits at once, so nothing is left
    to wait for); in this process where there is no ``rm``."""
    try:
        subprocess.run(
            ["sh", "-c", 'rm -rf -- "$1" </dev/null >/dev/null 2>&1 &', "sh", path],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        shutil.rmtree(path, ignore_errors=True)


def _libc_fn(name: str) -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    fn: Callable[..., int] | None = getattr(libc, name, None)
    return fn


def exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is not supported."""
    fn = _libc_fn("renameat2")
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), ctypes.c_uint(rename_exchange)) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), b)


def syncfs(path: str) -> None:
    """Flush the new folder to disk before it is switched in: one call, not an fsync per file."""
    fn = _libc_fn("syncfs")
    if fn is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fn(fd)
    finally:
        os.close(fd)
