from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import typer

from stacbatch.cli._common import require_stage, stage_option
from stacbatch.engine import _fs, _sql
from stacbatch.errors import InputError, QueryError
from stacbatch.stage import open_stage

if TYPE_CHECKING:
    import duckdb

    from stacbatch.stage import Stage

FORMATS = ("table", "csv", "json", "parquet")


def sql_cmd(
    query: str = typer.Argument(..., help="SQL over views `items` and `collections`."),
    stage: str | None = stage_option(),
    fmt: str = typer.Option("table", "--format", "-f", help="table | csv | json (one object per line) | parquet"),
    to: str | None = typer.Option(
        None, "--to", "-o", help="Write to this file instead of stdout (required for parquet)."
    ),
    max_rows: int = typer.Option(40, "--max-rows", help="Rows shown by --format table."),
) -> None:
    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet" and not to:
        raise InputError("--format parquet needs --to FILE")
    import duckdb  # here, not at the top: every other command's start-up would pay for it

    st = open_stage(require_stage(stage))

    try:
        with _interrupt_on_sigint(st.connection):
            rel = st.sql(query)
            if rel is None:
                return
            if fmt == "table":
                _out(_table(rel, max_rows), to)
                return
            # DuckDB's own writers: JSON columns stay nested JSON, types are rendered consistently.
            options = {"csv": "FORMAT csv, HEADER true", "json": "FORMAT json", "parquet": "FORMAT parquet"}[fmt]
            if to:
                st.connection.execute(f"COPY ({query}) TO {_sql.literal(to)} ({options})")
            else:
                _copy_to_stdout(st.connection, query, options)
    except duckdb.Error as err:
        raise QueryError(_failed(st, err)) from None


@contextlib.contextmanager
def _interrupt_on_sigint(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Ctrl-C interrupts the running query. While DuckDB holds the main thread, Python's handler for SIGINT cannot
    run (a long query noticed Ctrl-C late or never); the C-level handler still writes the signal to a wake-up pipe,
    and a thread reading it interrupts the query. KeyboardInterrupt then follows as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    seen: list[bool] = []

    def watch() -> None:
        while data := os.read(read_end, 64):
            if signal.SIGINT in data:
                seen.append(True)
                con.interrupt()

    thread = threading.Thread(target=watch, name="stacbatch-sigint", daemon=True)
    thread.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        os.close(write_end)  # the watcher reads the end of the pipe and stops
        thread.join(1)
        os.close(read_end)
    if seen:  # an interrupted query may end as if it were complete (a partial count): never exit 0 after Ctrl-C
        raise KeyboardInterrupt


def _failed(st: Stage, err: Exception) -> str:
    import duckdb

    newer = st.newer_version() if isinstance(err, duckdb.IOException) else None
    if newer is not None:  # a query longer than the retention of replaced files, or a writer that removed them
        return (
            f"query failed: the stage moved from v{st.version} to v{newer} while it ran and v{st.version}'s files "
            "are gone; run it again"
        )
    return f"query failed: {_sql.one_line(err)}"


def _copy_to_stdout(con: duckdb.DuckDBPyConnection, query: str, options: str) -> None:
    """DuckDB's COPY writes into a pipe that a thread drains into this process's own stdout. ``COPY TO
    '/dev/stdout'`` would reopen the file behind stdout at offset 0: a redirect to a file lost what the shell wrote
    before, and ``>>`` overwrote the file."""
    read_end, write_end = os.pipe()
    out = sys.stdout.buffer
    sys.stdout.flush()

    def drain() -> None:
        gone = False
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                if gone:
                    continue  # the reader went away (`| head`): drain on regardless, or DuckDB would block
                try:
                    out.write(chunk)
                except (BrokenPipeError, ValueError):
                    gone = True

    thread = threading.Thread(target=drain, name="stacbatch-sql-out", daemon=True)
    thread.start()
    try:
        con.execute(f"COPY ({query}) TO {_sql.literal(f'/dev/fd/{write_end}')} ({options})")
    finally:
        os.close(write_end)  # the drain sees the end of the data once DuckDB's own descriptor is closed too
        thread.join()
        out.flush()


def _table(rel: duckdb.DuckDBPyRelation, max_rows: int) -> str:
    return str(rel.limit(max_rows)) if max_rows else str(rel)


def _out(text: str, to: str | None) -> None:
    if to:
        fs, path = _fs.filesystem(to)
        with fs.open(path, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
