"""Reading a mapping's source with DuckDB: the format from the name or the mapping, and the SELECT that reads it."""

from __future__ import annotations

from typing import Any

import duckdb

from stacbatch.engine._sql import ident, literal, no_progress_bar
from stacbatch.errors import InputError

FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".json": "json", ".geojson": "json"}
FORMATS |= {".ndjson": "ndjson", ".jsonl": "ndjson", ".parquet": "parquet", ".geoparquet": "parquet"}


def source_format(path: str, options: dict[str, Any]) -> str:
    if options.get("format"):
        return str(options["format"])
    name = path.lower().removesuffix(".gz")
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise InputError(f"{path}: cannot tell the format from the name; set source.format in the mapping")


def _csv_args(path: str, options: dict[str, Any]) -> list[str]:
    # no date/time guessing: 05/07/2021 is ambiguous, and a mapping's datetime spec parses text itself
    candidates = "auto_type_candidates = ['BOOLEAN', 'BIGINT', 'DOUBLE', 'VARCHAR']"
    args = [literal(path), f"header = {'true' if options.get('header', True) else 'false'}", candidates]
    for opt, name in (("delimiter", "delim"), ("quote", "quote"), ("escape", "escape"), ("encoding", "encoding")):
        if opt in options:
            args.append(f"{name} = {literal(str(options[opt]))}")
    return args


#: what ``sniff_csv`` writes for "none" (no quote, escape or comment character)
_EMPTY = "(empty)"


def sniffed_csv_sql(con: duckdb.DuckDBPyConnection, path: str, options: dict[str, Any]) -> str | None:
    """``source_sql(path, options, rejects=True)`` for a CSV, with the dialect and column types DuckDB's sniffer
    finds written out (``auto_detect = false``): a relation binds again each time it runs, and binding a CSV read
    with auto-detection sniffs it again (~0.15 s at 20k sample lines); written out, it binds in ~4 ms. None when
    the sniffer's answer is not what this expects (the caller then reads with auto-detection)."""
    try:
        rows = con.execute(
            "SELECT Delimiter, Quote, Escape, NewLineDelimiter, Comment, SkipRows, HasHeader, Columns "
            f"FROM sniff_csv({', '.join(_csv_args(path, options))})"
        ).fetchall()
        delim, quote, escape, new_line, comment, skip, header, columns = rows[0]
        names = {str(c["name"]): str(c["type"]) for c in columns}
        if len(names) != len(columns) or not names:
            return None
    except (duckdb.Error, IndexError, KeyError, TypeError, ValueError):
        return None

    def char(value: Any) -> str:
        return literal("" if value in (None, _EMPTY) else str(value))

    args = [
        literal(path),
        "auto_detect = false",
        f"delim = {char(delim)}",
        f"quote = {char(quote)}",
        f"escape = {char(escape)}",
        f"new_line = {char(new_line)}",
        f"comment = {char(comment)}",
        f"skip = {int(skip)}",
        f"header = {'true' if header else 'false'}",
        "columns = {" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in names.items()) + "}",
        "store_rejects = true",
    ]
    if "encoding" in options:
        args.append(f"encoding = {literal(str(options['encoding']))}")
    return f"SELECT * FROM read_csv({', '.join(args)})"


def source_sql(path: str, options: dict[str, Any], rejects: bool = False) -> str:
    """The SELECT that reads a source file's records, with the mapping's source options. ``rejects``: CSV rows
    DuckDB cannot read (wrong number of fields, bad quoting) go to its ``reject_errors`` table instead of ending
    the read (``MappedSource.units`` turns them into failures)."""
    fmt = source_format(path, options)
    if fmt == "csv":
        args = _csv_args(path, options)
        if rejects:
            args.append("store_rejects = true")
        return f"SELECT * FROM read_csv({', '.join(args)})"
    if fmt == "parquet":
        return f"SELECT * FROM read_parquet({literal(path)})"
    json_format = "newline_delimited" if fmt == "ndjson" else "auto"
    # NDJSON: a line that is not JSON becomes a row of nulls instead of ending the read; ``MappedSource`` finds
    # which (its ``_unreadable``) and makes each a failure with its line number
    lenient = ", ignore_errors = true" if rejects and fmt == "ndjson" else ""
    scan = f"read_json({literal(path)}, format = {literal(json_format)}{lenient})"
    records = options.get("records")
    if not records:
        return f"SELECT * FROM {scan}"
    # a record array inside the document, e.g. {"data": [...]}: one row per element, its fields as columns
    path_sql = ".".join(ident(p) for p in str(records).split("."))
    return f"SELECT unnest(__r, recursive := false) FROM (SELECT unnest({path_sql}) AS __r FROM {scan})"


def connect(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_geoparquet_conversion = false")  # WKB stays a BLOB; shapely reads it
    no_progress_bar(con)
    return con
