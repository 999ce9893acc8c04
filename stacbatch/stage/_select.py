"""Which staged rows a command touches (edits, validation): an SQL predicate and/or an ids file, resolved to row
numbers per data file."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from stacbatch.engine import _fs, _sql
from stacbatch.errors import InputError, QueryError
from stacbatch.stage._stage import Stage
from stacbatch.stage._view import items_select


def read_ids(path: str) -> pa.Table:
    """An ids file: text (one id per line), NDJSON (strings or objects with id and optional collection), CSV with a
    header holding ``id`` (and optionally ``collection``), or Parquet with those columns."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such ids file")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        try:
            table = pq.read_table(p)
        except (OSError, pa.ArrowException) as err:
            raise InputError(f"{path}: not a readable Parquet file: {err}") from None
    elif suffix == ".csv":
        con = _sql.connect()
        try:
            table = con.sql(
                f"SELECT * FROM read_csv({_sql.literal(str(p))}, header = true, all_varchar = true)"
            ).to_arrow_table()
        except duckdb.Error as err:
            raise InputError(f"{path}: not a readable CSV file: {_sql.one_line(err)}") from None
        finally:
            con.close()
    else:
        table = _text_ids(p, json_lines=suffix in (".ndjson", ".jsonl", ".json"))
    if "id" not in table.column_names:
        raise InputError(f"{path}: no 'id' column; give a header row with id (and optionally collection)")
    cols = ["collection", "id"] if "collection" in table.column_names else ["id"]
    table = table.select(cols).cast(pa.schema([(c, pa.string()) for c in cols]))
    if table["id"].null_count:
        raise InputError(f"{path}: {table['id'].null_count} row(s) without an id")
    return table


def _text_ids(p: Path, json_lines: bool) -> pa.Table:
    ids: list[str] = []
    colls: list[str | None] = []
    for n, raw in enumerate(p.read_bytes().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        if not json_lines:
            ids.append(line.decode("utf-8", "replace"))
            colls.append(None)
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            raise InputError(f"{p}:{n}: not JSON ({err})") from None
        if isinstance(value, str):
            ids.append(value)
            colls.append(None)
        elif isinstance(value, dict) and isinstance(value.get("id"), str):
            ids.append(value["id"])
            colls.append(value.get("collection"))
        else:
            raise InputError(f'{p}:{n}: expected an id string or {{"collection": ..., "id": ...}}')
    if any(c is not None for c in colls):
        if any(c is None for c in colls):
            raise InputError(f"{p}: give a collection on every line or on none")
        return pa.table({"collection": colls, "id": ids})
    return pa.table({"id": ids})


def register_ids(con: duckdb.DuckDBPyConnection, ids: pa.Table) -> str:
    """Register ``_ids`` and return the predicate that matches them."""
    con.register("_ids", ids)
    if "collection" in ids.column_names:
        return "(collection, id) IN (SELECT collection, id FROM _ids)"
    return "id IN (SELECT id FROM _ids)"


def unknown_ids(con: duckdb.DuckDBPyConnection, ids: pa.Table) -> list[str]:
    on = "s.id = i.id" + (" AND s.collection = i.collection" if "collection" in ids.column_names else "")
    cols = "i.collection || '/' || i.id" if "collection" in ids.column_names else "i.id"
    rows = con.sql(f"SELECT DISTINCT {cols} FROM _ids i ANTI JOIN items s ON {on} ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def select_rows(stage: Stage, predicate: str) -> dict[str, list[int]]:
    """Per data file (its manifest path), the 0-based row numbers the predicate matches."""
    by_abs = {_fs.full_path(stage.fs, _fs.join(stage.root, f["path"])): f["path"] for f in stage.manifest.files}
    if not by_abs:
        return {}
    source, _names = items_select(
        stage.manifest, None, lambda rel: _fs.full_path(stage.fs, _fs.join(stage.root, rel)), locate=True
    )
    query = _sql.load("select_rows").replace("{source}", source).replace("{predicate}", predicate)
    try:
        rows = stage.connection.sql(query).fetchall()
    except duckdb.Error as err:
        raise QueryError(f"selecting items failed: {_sql.one_line(err)}") from None
    return {by_abs[filename]: list(numbers) for filename, numbers in rows}


def selection(stage: Stage, where: str | None, ids: pa.Table | None, allow_unknown: bool) -> tuple[str, list[str]]:
    """The combined predicate (already compiled SQL for ``where``) and the ids no staged item has."""
    parts = []
    missing: list[str] = []
    if ids is not None:
        parts.append(register_ids(stage.connection, ids))
        missing = unknown_ids(stage.connection, ids)
        if missing and not allow_unknown:
            shown = ", ".join(repr(m) for m in missing[:5])
            more = f" and {len(missing) - 5:,} more" if len(missing) > 5 else ""
            raise InputError(
                f"{len(missing):,} id(s) in the ids file are not staged: {shown}{more}; fix the file or pass "
                "--ignore-unknown-ids; nothing was changed"
            )
    if where:
        parts.append(f"({where})")
    if not parts:
        raise InputError("select items with --where and/or --ids (use --where true to select every item)")
    return " AND ".join(parts), missing


def query_rows(stage: Stage, predicate: str, query: str) -> pa.Table:
    """``query``'s result: SQL over ``_rows``, the rows ``predicate`` selects (the items view's columns plus each
    row's ``filename`` and ``file_row_number``)."""
    if not stage.manifest.files:
        return stage.connection.sql(f"WITH _rows AS (SELECT * FROM items WHERE false) {query}").to_arrow_table()
    source, _names = items_select(
        stage.manifest, None, lambda rel: _fs.full_path(stage.fs, _fs.join(stage.root, rel)), locate=True
    )
    sql = f"WITH _rows AS (SELECT * FROM (\n{source}\n) WHERE {predicate})\n{query}"
    try:
        return stage.connection.sql(sql).to_arrow_table()
    except duckdb.Error as err:
        raise QueryError(f"looking up values for the selected items failed: {_sql.one_line(err)}") from None


_SPILL: list[str] = []


def _spill_dir() -> str:
    """One local folder per process for DuckDB to spill to (it cannot switch folders once it has spilled)."""
    if not _SPILL:
        import atexit
        import shutil
        import tempfile

        _SPILL.append(tempfile.mkdtemp(prefix="stacbatch-spill-"))
        atexit.register(shutil.rmtree, _SPILL[0], True)
    return _SPILL[0]


@contextlib.contextmanager
def bounded_memory(con: duckdb.DuckDBPyConnection, memory: str = "1GB") -> Iterator[None]:
    """Queries on ``con`` within ``memory``, spilling to a local folder beyond it (joins, aggregates and sorts of
    millions of rows), with insertion order not kept (it costs memory); the limits restored after."""
    con.execute(f"SET temp_directory = {_sql.literal(_spill_dir())}")
    settings = {"memory_limit": memory, "preserve_insertion_order": "false"}
    before = {k: con.sql(f"SELECT current_setting({_sql.literal(k)})").fetchall()[0][0] for k in settings}
    try:
        for k, v in settings.items():
            con.execute(f"SET {k} = {_sql.literal(v)}")
        yield
    finally:
        for k, v in before.items():
            con.execute(f"SET {k} = {_sql.literal(str(v))}")


def lookup_parts(
    stage: Stage, predicate: str, query: str, out: str, memory: str = "1GB"
) -> dict[str, tuple[np.ndarray, str]]:
    """Run ``query`` (SQL over ``_rows``, see ``query_rows``, returning ``filename, file_row_number`` and value
    columns, any number of rows per item) and write its rows to Parquet under the local folder ``out``, one part per
    data file. Per data file (its manifest path): the row numbers that have rows (sorted, unique) and its part's
    folder. DuckDB streams the result to the parts within ``memory`` (spilling beyond it), so a join of a million
    items' assets with a manifest of millions of rows stays bounded; nothing is collected in this process."""
    import os

    paths = {_fs.full_path(stage.fs, _fs.join(stage.root, f["path"])): f["path"] for f in stage.manifest.files}
    if not paths:
        return {}
    names = sorted(paths)
    con = stage.connection
    con.register("_lookup_files", pa.table({"filename": names, "_file": pa.array(range(len(names)), pa.int32())}))
    source, _names = items_select(
        stage.manifest, None, lambda rel: _fs.full_path(stage.fs, _fs.join(stage.root, rel)), locate=True
    )
    os.makedirs(out, exist_ok=True)
    sql = (
        f"COPY (WITH _rows AS (SELECT * FROM (\n{source}\n) WHERE {predicate})\n"
        f"SELECT f._file, q.* EXCLUDE (filename) FROM ({query}) q JOIN _lookup_files f USING (filename)) "
        f"TO {_sql.literal(os.path.join(out, 'parts'))} (FORMAT parquet, PARTITION_BY (_file), OVERWRITE_OR_IGNORE)"
    )
    try:
        with bounded_memory(con, memory):
            con.execute(sql)
    except duckdb.Error as err:
        raise QueryError(f"looking up values for the selected items failed: {_sql.one_line(err)}") from None
    found: dict[str, tuple[np.ndarray, str]] = {}
    parts = os.path.join(out, "parts")
    for entry in sorted(os.listdir(parts)) if os.path.isdir(parts) else []:
        if not entry.startswith("_file="):
            continue
        folder = os.path.join(parts, entry)
        rows = pq.read_table(folder, columns=["file_row_number"])["file_row_number"].to_numpy()
        found[paths[names[int(entry.split("=", 1)[1])]]] = (np.unique(rows.astype(np.int64)), folder)
    return found
