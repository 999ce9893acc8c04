"""SQL lives in ``sql/*.sql`` files; this module loads them and quotes identifiers and literals.

Values go to DuckDB as parameters wherever DuckDB allows them; view definitions cannot take parameters, so file
lists are inlined through ``literal`` (the one quoting helper, with ``ident`` for identifiers).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

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


def connect() -> duckdb.DuckDBPyConnection:
    """Every DuckDB connection stacbatch opens: no progress bar (stderr belongs to stacbatch's own messages)."""
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    return con
