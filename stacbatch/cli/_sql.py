from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from stacbatch import _fs, _sql
from stacbatch.cli._common import require_stage, stage_option
from stacbatch.errors import InputError, QueryError
from stacbatch.stage import open_stage

if TYPE_CHECKING:
    import duckdb

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
        rel = st.sql(query)
    except duckdb.Error as err:
        raise QueryError(f"query failed: {_sql.one_line(err)}") from None
    if rel is None:
        return
    try:
        if fmt == "table":
            _out(_table(rel, max_rows), to)
        else:
            # DuckDB's own writers: JSON columns stay nested JSON, types are rendered consistently.
            options = {
                "csv": "FORMAT csv, HEADER true",
                "json": "FORMAT json",
                "parquet": "FORMAT parquet",
            }[fmt]
            target = to or "/dev/stdout"
            sys.stdout.flush()
            st.connection.execute(f"COPY ({query}) TO {_sql.literal(target)} ({options})")
    except duckdb.Error as err:
        raise QueryError(f"query failed: {_sql.one_line(err)}") from None


def _table(rel: duckdb.DuckDBPyRelation, max_rows: int) -> str:
    return str(rel.limit(max_rows)) if max_rows else str(rel)


def _out(text: str, to: str | None) -> None:
    if to:
        fs, path = _fs.filesystem(to)
        with fs.open(path, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
