"""Which staged rows a command touches (edits, validation): an SQL predicate and/or an ids file, resolved to row
numbers per data file."""

from __future__ import annotations

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


def select_values(stage: Stage, predicate: str, query: str) -> dict[str, tuple[np.ndarray, pa.Array, np.ndarray]]:
    """Per data file (its manifest path): the row numbers, values and to-do flags ``query`` gives, by row number.
    ``query`` is SQL over ``_rows`` (see ``query_rows``) returning ``filename, file_row_number, value, todo``: one
    row per item at most."""
    by_abs = {_fs.full_path(stage.fs, _fs.join(stage.root, f["path"])): f["path"] for f in stage.manifest.files}
    if not by_abs:
        return {}
    table = query_rows(
        stage,
        predicate,
        f"SELECT filename, file_row_number, value, todo FROM ({query}) ORDER BY filename, file_row_number",
    )
    if not table.num_rows:
        return {}
    names = table["filename"].to_numpy(zero_copy_only=False)
    rows = table["file_row_number"].to_numpy(zero_copy_only=False).astype(np.int64)
    todo = table["todo"].fill_null(True).to_numpy(zero_copy_only=False).astype(bool)
    values = table["value"].combine_chunks()
    out: dict[str, tuple[np.ndarray, pa.Array, np.ndarray]] = {}
    starts = np.flatnonzero(np.r_[True, names[1:] != names[:-1]])
    for lo, hi in zip(starts, np.r_[starts[1:], len(names)], strict=True):
        out[by_abs[names[lo]]] = (rows[lo:hi], values.slice(lo, hi - lo), todo[lo:hi])
    return out
