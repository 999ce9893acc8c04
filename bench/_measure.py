"""Run a command and measure wall time and peak memory of its whole process tree (workers included)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

#: Outputs of earlier steps are moved here and deleted at the very end of a run: on ext4 without a journal (this
#: VM), creating files within ~30 s of deleting many is several times slower (the inode allocator re-reads every
#: recently freed inode), which would time the file system's recovery instead of the next tool.
TRASH = Path(__file__).parent / "out" / "trash"


def discard(path: Path) -> Path:
    """Move an old output out of the way (a rename); ``empty_trash`` deletes it after the measurements."""
    if path.exists() or path.is_symlink():
        TRASH.mkdir(parents=True, exist_ok=True)
        path.rename(TRASH / f"{time.time_ns()}-{path.name}")
    return path


def empty_trash() -> None:
    import shutil

    shutil.rmtree(TRASH, ignore_errors=True)


@dataclass
class Measurement:
    seconds: float
    peak_mb: float
    returncode: int
    stderr: str


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            out.extend(int(c) for c in text.split())
    except OSError:
        pass
    return out


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(root: int) -> int:
    total, stack, seen = 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _rss_kb(pid)
        stack.extend(_children(pid))
    return total


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 7200) -> Measurement:
    # Earlier steps' files (JSON trees of 100k files, stages, a database) are still being written back to disk for
    # up to ~30 s after they finish; each step starts once that is done, not while the kernel's flusher threads
    # take CPU from it.
    os.sync()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_kb(proc.pid))
            stop.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        stop.set()
        sampler.join()
    return Measurement(time.perf_counter() - t0, peak / 1024, proc.returncode, err[-2000:])
