"""One error root and the exit codes every command uses.

User errors carry a one-line message that says what went wrong and what to do; the CLI prints it and exits with
the error's code, never a traceback (``-v`` shows one for bug reports).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: ``diff --exit-code`` found differences (as ``git diff --exit-code``).
    DIFFERENCES = 1
    #: Bad command line (typer/click use 2 as well).
    USAGE = 2
    #: The run finished but some items failed; see the run's failures file.
    PARTIAL = 3
    #: Bad input (missing file, unreadable source, bad option value): nothing was written.
    INPUT = 4
    #: The stage is missing, locked or inconsistent.
    STAGE = 5
    #: A bug in stacbatch.
    INTERNAL = 70


class StacbatchError(Exception):
    """Root of all stacbatch errors. ``str(err)`` is a complete one-line message for the user."""

    exit_code: ExitCode = ExitCode.INTERNAL


class InputError(StacbatchError):
    """A source, option or argument the user gave cannot be used."""

    exit_code = ExitCode.INPUT


class StageError(StacbatchError):
    """The stage cannot be opened, is locked by another writer, or is inconsistent."""

    exit_code = ExitCode.STAGE


class QueryError(InputError):
    """An SQL query or predicate given by the user failed."""
