"""Reading a mapping's source with DuckDB: the format from the name or the mapping, and the SELECT that reads it."""

from __future__ import annotations

from typing import Any

import duckdb

from stacbatch._sql import ident, literal
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


def source_sql(path: str, options: dict[str, Any], rejects: bool = False) -> str:
    """The SELECT that reads a source file's records, with the mapping's source options. ``rejects``: CSV rows
    DuckDB cannot read (wrong number of fields, bad quoting) go to its ``reject_errors`` table instead of ending
    the read (``MappedSource.units`` turns them into failures)."""
    fmt = source_format(path, options)
    if fmt == "csv":
        # no date/time guessing: 05/07/2021 is ambiguous, and a mapping's datetime spec parses text itself
        candidates = "auto_type_candidates = ['BOOLEAN', 'BIGINT', 'DOUBLE', 'VARCHAR']"
        args = [literal(path), f"header = {'true' if options.get('header', True) else 'false'}", candidates]
        if rejects:
            args.append("store_rejects = true")
        for opt, name in (("delimiter", "delim"), ("quote", "quote"), ("escape", "escape"), ("encoding", "encoding")):
            if opt in options:
                args.append(f"{name} = {literal(str(options[opt]))}")
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
    con.execute("SET enable_progress_bar = false")
    return con
