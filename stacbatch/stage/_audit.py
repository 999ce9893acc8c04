"""The audit log and tombstones: append-only Parquet files, one per run (two for a large one), named by the
manifest.

Written before the manifest switch like every other stage file, so a crash leaves neither a half-written log nor a
log entry for a change that never committed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stacbatch.engine import _fs
from stacbatch.engine._layout import AUDIT, TOMBSTONES
from stacbatch.engine._pool import default_workers
from stacbatch.kernel._rows import TS

AUDIT_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("time", TS, nullable=False),
        pa.field("operation", pa.string(), nullable=False),
        pa.field("collection", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("paths", pa.list_(pa.string())),
        pa.field("hash_before", pa.string()),
        pa.field("hash_after", pa.string()),
    ]
)

TOMBSTONE_SCHEMA = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("content_hash", pa.string()),
        pa.field("deleted", TS, nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
    ]
)


#: columns with few distinct values in a file (dictionary-encoded); with ``id``, those that queries filter on
_REPEATED = ("run_id", "operation", "collection", "time", "deleted")


def audit_table(
    run_id: str,
    time: datetime,
    operation: str | pa.Array,
    collection: pa.Array,
    ids: pa.Array,
    paths: pa.Array | None,
    hash_before: pa.Array | None,
    hash_after: pa.Array | None,
) -> pa.Table:
    """Columns in, one audit table out (``None`` = all null; a str operation applies to every row)."""
    n = len(ids)
    op = pa.repeat(operation, n) if isinstance(operation, str) else operation

    def col(value: pa.Array | None, typ: pa.DataType) -> pa.Array:
        return pa.nulls(n, typ) if value is None else value.cast(typ)

    return pa.Table.from_arrays(
        [
            pa.repeat(run_id, n),
            pa.repeat(pa.scalar(time, TS), n),
            op.cast(pa.string()),
            collection.cast(pa.string()),
            ids.cast(pa.string()),
            col(paths, pa.list_(pa.string())),
            col(hash_before, pa.string()),
            col(hash_after, pa.string()),
        ],
        schema=AUDIT_SCHEMA,
    )


#: a log of at least this many rows is written as two files at once (one per core; ~0.35 s alone at 1M rows, at
#: the very end of a load, when nothing else runs)
SPLIT_ROWS = 400_000


def _write(
    fs: Any, root: str, folder: str, run_id: str, tables: list[pa.Table], schema: pa.Schema
) -> list[dict[str, Any]]:
    """Write a run's rows as one Parquet file, or two written at once when there are many (``SPLIT_ROWS``) and
    two cores; the manifest entries (none when there are no rows)."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return []
    table = pa.concat_tables([t.cast(schema) for t in tables])
    parts = 2 if table.num_rows >= SPLIT_ROWS and default_workers() > 1 else 1
    step = -(-table.num_rows // parts)
    names = [f"{folder}/{folder}-{run_id}{'' if k == 0 else f'-{k}'}.parquet" for k in range(parts)]
    slices = [table.slice(k * step, step) for k in range(parts)]
    fs.makedirs(_fs.join(root, folder), exist_ok=True)
    if parts == 1:
        _write_file(fs, _fs.join(root, names[0]), slices[0], schema)
    else:
        from concurrent.futures import ThreadPoolExecutor

        # pyarrow encodes and compresses without the GIL: two threads use two cores
        with ThreadPoolExecutor(parts, thread_name_prefix="stacbatch-audit") as pool:
            list(pool.map(lambda rel, part: _write_file(fs, _fs.join(root, rel), part, schema), names, slices))
    return [{"path": rel, "run": run_id, "rows": part.num_rows} for rel, part in zip(names, slices, strict=True)]


def _write_file(fs: Any, path: str, table: pa.Table, schema: pa.Schema) -> None:
    with fs.open(path, "wb") as f:
        # Statistics and dictionaries only where they serve (run, time, operation, collection, id), not on a
        # million distinct hashes (less work by construction; no gain measurable above this VM's noise).
        pq.write_table(
            table,
            f,
            compression="zstd",
            compression_level=1,
            use_dictionary=[c for c in _REPEATED if c in schema.names],
            write_statistics=[c for c in (*_REPEATED, "id") if c in schema.names],
        )


def write_audit(fs: Any, root: str, run_id: str, tables: list[pa.Table]) -> list[dict[str, Any]]:
    """Write a run's audit rows (in the given order); the manifest entries (none when nothing changed)."""
    return _write(fs, root, AUDIT, run_id, tables, AUDIT_SCHEMA)


def write_tombstones(fs: Any, root: str, run_id: str, tables: list[pa.Table]) -> list[dict[str, Any]]:
    return _write(fs, root, TOMBSTONES, run_id, tables, TOMBSTONE_SCHEMA)


def tombstones_from_audit(audit: pa.Table) -> pa.Table:
    """Tombstones for the audit rows that are deletions."""
    import pyarrow.compute as pc

    deleted = audit.filter(pc.equal(audit["operation"], "delete"))
    return pa.Table.from_arrays(
        [deleted["collection"], deleted["id"], deleted["hash_before"], deleted["time"], deleted["run_id"]],
        schema=TOMBSTONE_SCHEMA,
    )


def load_audit(
    fs: Any, root: str, run_id: str, time: datetime, old: list[dict[str, Any]], new: list[dict[str, Any]]
) -> tuple[list[pa.Table], dict[str, Any] | None]:
    """Audit rows of a load: inserts, and replacements whose content changed (with the paths that changed).
    ``old`` are the manifest entries of the touched collections before the load, ``new`` the entries after it.

    Returns tables for ``commit`` to write, or, for a first load of local collections (every row an insert), the
    manifest entry of an audit file DuckDB already wrote (a million rows never pass through Python)."""
    import pyarrow.compute as pc

    from stacbatch.engine import _sql
    from stacbatch.engine._patch import changed_paths

    if not new:
        return [], None
    new_paths = [_fs.full_path(fs, _fs.join(root, e["path"])) for e in new]
    con = _sql.connect(fs)
    try:
        if not old and _fs.is_local(fs):
            rel = f"{AUDIT}/{AUDIT}-{run_id}.parquet"
            path = _fs.join(root, rel)
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            con.execute(
                _sql.load("load_audit_inserts").replace("{target}", _sql.literal(path)),
                [run_id, time, new_paths],
            )
            rows = con.sql("SELECT count(*) FROM read_parquet($1)", params=[path]).fetchall()[0][0]
            return [], {"path": rel, "run": run_id, "rows": int(rows)}
        if old:
            old_paths = [_fs.full_path(fs, _fs.join(root, e["path"])) for e in old]
            table = con.sql(_sql.load("load_audit"), params=[new_paths, old_paths, run_id]).to_arrow_table()
        else:
            table = con.sql(
                "SELECT collection, id, NULL::VARCHAR AS hash_before, content_hash AS hash_after, NULL::VARCHAR AS "
                "patch FROM read_parquet($1) WHERE stage_run = $2 ORDER BY collection, id",
                params=[new_paths, run_id],
            ).to_arrow_table()
    finally:
        con.close()
    op = pc.if_else(pc.is_null(table["hash_before"]), "insert", "replace")
    paths = pa.array(changed_paths(table["patch"].to_pylist()), pa.list_(pa.string()))
    return [
        audit_table(
            run_id, time, op, table["collection"], table["id"], paths, table["hash_before"], table["hash_after"]
        )
    ], None
