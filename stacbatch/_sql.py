"""SQL lives in ``sql/*.sql`` files; this module loads them and quotes identifiers and literals.

Values go to DuckDB as parameters wherever DuckDB allows them; view definitions cannot take parameters, so file
lists are inlined through ``literal`` (the one quoting helper, with ``ident`` for identifiers).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stacbatch import _fs

if TYPE_CHECKING:
    import duckdb

_HERE = Path(__file__).resolve().parent


@cache
def _sql_dir() -> Path:
    for candidate in (_HERE / "sql", _HERE.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("stacbatch's sql/ folder is missing from the installation")


@cache
def load(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    return (_sql_dir() / f"{name}.sql").read_text()


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def literal_list(values: list[str]) -> str:
    return "[" + ", ".join(literal(v) for v in values) + "]"


def one_line(err: BaseException) -> str:
    """A library's (often multi-line) error message folded onto one line for the user. DuckDB's echo of the query
    (``LINE 1: ...`` with a caret) is dropped: it shows stacbatch's generated SQL, not what the user wrote."""
    text = str(err)
    cut = text.find("\nLINE ")
    if cut > 0:
        text = text[:cut]
    return " ".join(text.split())


@cache
def _local_database() -> duckdb.DuckDBPyConnection:
    import duckdb  # imported on first use: a load that never queries starts ~0.1 s sooner

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    # Internal queries over one file's rows: a small cache is enough, and leaves memory to the worker's own work.
    con.execute("SET memory_limit = '512MB'")
    return con


def cursor() -> duckdb.DuckDBPyConnection:
    """A cheap connection (~1 ms, a fresh one costs ~40 ms) to one in-memory database per process, for short
    internal queries over local data; close it after use. Names registered on it are visible to other cursors."""
    return _local_database().cursor()


def connect(fs: Any = None) -> duckdb.DuckDBPyConnection:
    """Every DuckDB connection stacbatch opens: no progress bar (stderr belongs to stacbatch's own messages);
    a non-local fsspec filesystem (S3, memory, ...) is registered so DuckDB reads ``proto://`` paths through it."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    if fs is not None and not _fs.is_local(fs):
        con.register_filesystem(fs)
    return con
