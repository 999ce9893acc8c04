"""Helper processes end when the stacbatch process that started them dies.

A killed load (SIGKILL: no exit handlers) left its fork server and workers alive: they held the pool's semaphores
(``/dev/shm/sem.mp-*``) and kept multiprocessing's resource tracker from removing them. The fork server and every
worker watch the main process (a pidfd, so no polling) and exit with it; the tracker then cleans up.
"""

from __future__ import annotations

import os
import select
import threading

#: the main process's id, in the environment the fork server (and so every worker) inherits
ENV = "STACBATCH_MAIN_PID"


def watch_main() -> None:
    """Exit this process at once when the main process (``$STACBATCH_MAIN_PID``) has ended. Idempotent per process."""
    pid = os.environ.get(ENV, "")
    if not pid.isdigit() or int(pid) == os.getpid() or not hasattr(os, "pidfd_open"):
        return
    try:
        fd = os.pidfd_open(int(pid))
    except OSError:  # gone already, or pidfds unsupported
        if not alive(int(pid)):
            os._exit(1)
        return

    def wait() -> None:
        select.select([fd], [], [])  # readable once the process has exited
        os._exit(1)

    threading.Thread(target=wait, name="stacbatch-orphan-watch", daemon=True).start()


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
