"""Start the worker pool's fork server while the CLI is still importing, for commands that will use workers.

It reads the command line (which command, which sources) before typer does: a guess, never a decision; the
pool starts on first use anyway when the guess was no.
"""

from __future__ import annotations

import multiprocessing
import os

from stacbatch.engine._pool import PREFORK_MIN_BYTES, default_workers, main_importable, start_fork_server

_LOAD = ["stacbatch.stage._parse", "stacbatch.stage._writer"]
#: commands whose work goes to worker processes (when the input is large enough), and the modules their workers
#: run, which the fork server imports before it forks them
_POOL_COMMANDS = {
    "load": _LOAD,
    "scaffold": [*_LOAD, "stacbatch.mapping._run"],
    "update": ["stacbatch.edit._rewrite"],
    "transform": ["stacbatch.edit._rewrite"],
}


def local_bytes(argv: list[str]) -> int:
    """Bytes of the regular files named on the command line (a rough guess at the input: folders are not walked,
    so a folder source just means the pool starts when the load needs it, as without ``prestart``)."""
    total = 0
    for arg in argv[1:]:
        if not arg.startswith("-") and "://" not in arg:
            try:
                if os.path.isfile(arg):
                    total += os.path.getsize(arg)
            except OSError:
                continue
    return total


def prestart(argv: list[str]) -> None:
    """For a command that will use workers, start the fork server now (from the CLI's first import).

    The fork server imports the parse and write modules (pyarrow, numpy, the kernel) once, as the template its
    workers are forked from: started here it does so on the second core while this process imports the CLI,
    instead of each worker importing them after it. Nothing happens for other commands, in the fork server
    (whose argv is Python's ``-c``) or in a worker (which re-imports the script, with our argv, as it starts).
    """
    command = next((a for a in argv[1:] if not a.startswith("-")), "")
    # ``_inheriting``: multiprocessing's own mark of a child still importing the parent's main module
    if command not in _POOL_COMMANDS or getattr(multiprocessing.current_process(), "_inheriting", False):
        return
    if default_workers() <= 1 or not main_importable():
        return
    if command in ("load", "scaffold") and "--workers" not in argv and local_bytes(argv) < PREFORK_MIN_BYTES:
        return  # small local input (or none, e.g. an API): parsed inline, the pool would not start
    modules = list(_POOL_COMMANDS[command])
    if command == "load" and any(a in ("--mapping", "-m") or a.startswith("--mapping=") for a in argv):
        modules.append("stacbatch.mapping._run")  # DuckDB and the compiler, once, not in each worker
    try:
        start_fork_server(["stacbatch.engine._gc_pause", *modules, "stacbatch.engine._gc_freeze"])
    except (OSError, ValueError):  # no fork server here: the pool will say so, or run inline
        return
