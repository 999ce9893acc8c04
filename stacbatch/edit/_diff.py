"""``diff A B``: compare two stages (or anything ``load`` reads) on (collection, id) and content hash.

The comparison reads only key and hash columns; item text is read for the changed rows only, and the JSON paths
that changed come from a JSON merge patch computed by DuckDB. The change set streams to Parquet (and NDJSON).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stacbatch.edit._changes import located_change_table
from stacbatch.edit._paths import parse_path
from stacbatch.engine import _fs, _json, _sql
from stacbatch.engine._layout import MANIFEST
from stacbatch.engine._patch import format_path, patch_paths
from stacbatch.engine._progress import current
from stacbatch.errors import InputError, QueryError
from stacbatch.kernel._rows import BBOX, TS
from stacbatch.stage import Stage

KINDS = ("added", "deleted", "modified", "unchanged")

CHANGESET_SCHEMA = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("hash_before", pa.string()),
        pa.field("hash_after", pa.string()),
        pa.field("paths", pa.list_(pa.string())),
        # The item after the change (NULL for deletions), with its query columns: a change set can be merged.
        pa.field("datetime", TS),
        pa.field("start_datetime", TS),
        pa.field("end_datetime", TS),
        pa.field("bbox", BBOX),
        pa.field("geometry", pa.binary()),
        pa.field("item", pa.json_(pa.string())),
    ]
)
CHANGESET_FORMAT = b"stacbatch-changeset/1"


@dataclass
class DiffResult:
    a: str
    b: str
    #: collection -> {added, deleted, modified, unchanged}
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    changes_written: int = 0
    seconds: float = 0.0

    def totals(self) -> dict[str, int]:
        return {k: sum(c[k] for c in self.counts.values()) for k in KINDS}

    @property
    def differs(self) -> bool:
        t = self.totals()
        return bool(t["added"] or t["deleted"] or t["modified"])


def is_stage(path: str) -> bool:
    fs, root = _fs.filesystem(path)
    return bool(fs.exists(_fs.join(root, MANIFEST)))


@contextlib.contextmanager
def as_stage(source: str, api: Any = None) -> Iterator[Stage]:
    """A stage as it is, or anything ``load`` reads staged into a temporary stage for the comparison (``api``: the
    ``ApiOptions`` for a STAC API URL)."""
    if is_stage(source):
        yield Stage.open(source)
        return
    from stacbatch.stage import load

    with tempfile.TemporaryDirectory(prefix="stacbatch-diff-") as tmp:
        res = load(os.path.join(tmp, "stage"), [source], api=api)
        if res.failed:
            raise InputError(
                f"{source}: {res.failed:,} item(s) could not be read, so the comparison would be wrong; "
                f"fix them first (load it into a stage to see the failures)"
            )
        yield Stage.open(os.path.join(tmp, "stage"))


def source_sql(
    con: duckdb.DuckDBPyConnection, stage: Stage, name: str, collections: list[str] | None = None
) -> list[str]:
    """A view ``name`` over a stage's data files (only those of ``collections`` when given; an empty table when
    there are none), with each row's place: ``__file`` (index into the returned list, ``stage.file_paths
    (collections)``) and ``__row`` (row number in that file)."""
    paths = stage.file_paths(collections)
    if paths:
        # Not read as hive partitions: a filter on `collection` would then drop whole files and DuckDB would number
        # the rest from 0, so `__file` would no longer index this list (diff -c read other files' rows).
        src = f"read_parquet({_sql.literal_list(paths)}, hive_partitioning = false)"
        place = "file_index::INTEGER AS __file, file_row_number AS __row"
    else:
        con.execute(_sql.load("empty_items"))
        src = "_empty_items"
        place = "NULL::INTEGER AS __file, NULL::BIGINT AS __row"
    con.execute(f"CREATE OR REPLACE VIEW {_sql.ident(name)} AS SELECT *, {place} FROM {src}")
    return paths


def connect_pair(a: Stage, b: Stage, collections: list[str] | None = None) -> duckdb.DuckDBPyConnection:
    con = _sql.connect(a.fs if not _fs.is_local(a.fs) else b.fs)
    # Geometry stays WKB bytes, as staged; the comparison never needs it parsed.
    con.execute("SET enable_geoparquet_conversion = false")
    source_sql(con, a, "_a", collections)
    source_sql(con, b, "_b", collections)
    return con


def compare_keys(con: duckdb.DuckDBPyConnection, collections: list[str] | None = None) -> dict[str, dict[str, int]]:
    """Fill temporary table ``_k`` (every key that differs, with its kind and hashes) from views ``_a`` and ``_b``;
    return the counts per collection."""
    where = ""
    if collections:
        where = f"WHERE collection IN ({', '.join(_sql.literal(c) for c in collections)})"
    query = _sql.load("diff_keys").replace("{where}", where)
    try:
        con.execute(query)
        rows = con.sql("SELECT collection, kind, sum(n)::BIGINT FROM _counts GROUP BY ALL ORDER BY ALL").fetchall()
    except duckdb.Error as err:
        raise QueryError(f"comparing stages failed: {_sql.one_line(err)}") from None
    counts: dict[str, dict[str, int]] = {}
    for collection, kind, n in rows:
        counts.setdefault(collection, dict.fromkeys(KINDS, 0))[kind] = int(n)
    return counts


def change_batches(
    con: duckdb.DuckDBPyConnection,
    ignore: list[tuple[str, ...]],
    rows: int = 10_000,
    stages: tuple[Stage, Stage] | None = None,
    collections: list[str] | None = None,
) -> Iterator[pa.Table]:
    """The change set in batches (sorted by collection, id), paths filled in, ``ignore`` applied: a modified row
    whose every changed path is ignored is dropped (and counted unchanged by the caller).

    With ``stages`` (the stages behind views ``_a`` and ``_b``, over the files of ``collections``) the rows are read
    by their place in the files (``_changes``) when that fits in memory; otherwise, and for other sources, through
    the SQL join."""
    located = located_change_table(con, *stages, collections=collections) if stages is not None else None
    batches: Iterator[pa.RecordBatch]
    if located is not None:
        batches = iter(located.to_batches(rows))
    else:
        batches = iter(con.sql(_sql.load("diff_changes")).to_arrow_reader(rows))
    for batch in batches:
        table = pa.Table.from_batches([batch])
        patches = table["patch"].to_pylist()
        paths: list[list[str] | None] = []
        keep: list[bool] = []
        for patch in patches:
            if patch is None:
                paths.append(None)
                keep.append(True)
                continue
            segs = [s for s in patch_paths(_json.loads(patch)) if not _ignored(s, ignore)]
            paths.append([format_path(s) for s in segs])
            keep.append(bool(segs))
        table = table.drop_columns(["patch"]).append_column("paths", pa.array(paths, pa.list_(pa.string())))
        if not all(keep):
            table = table.filter(pa.array(keep))
        yield to_changeset(table)


def _ignored(segs: tuple[str, ...], ignore: list[tuple[str, ...]]) -> bool:
    return any(segs[: len(i)] == i for i in ignore)


def to_changeset(table: pa.Table) -> pa.Table:
    cols = []
    for f in CHANGESET_SCHEMA:
        col = table[f.name]
        if f.name == "item" and not isinstance(col.type, pa.BaseExtensionType):
            col = col.cast(pa.string())  # DuckDB's JSON comes as text: wrap it as Arrow JSON
        cols.append(col.cast(f.type))
    return pa.Table.from_arrays(cols, schema=CHANGESET_SCHEMA)


def diff(
    a: str,
    b: str,
    *,
    out: str | None = None,
    ndjson: str | None = None,
    ignore: list[str] | None = None,
    collections: list[str] | None = None,
    api: Any = None,
) -> DiffResult:
    """Compare stage (or source) ``a`` with ``b`` by (collection, id) and content hash: counts of added, removed,
    modified and unchanged items per collection, and with ``out``/``ndjson`` the change set (each change with the
    item after it and the JSON paths that differ) as Parquet/NDJSON. ``ignore``: JSON paths whose changes do not
    count (``properties.updated``). ``a``/``b`` may be anything ``load`` reads (``api``: options for an API URL)."""
    t0 = time.perf_counter()
    ignore_segs = [parse_path(p) for p in ignore or []]
    res = DiffResult(a, b)
    with as_stage(a, api) as sa, as_stage(b, api) as sb:
        con = connect_pair(sa, sb, collections)
        try:
            progress = current()
            progress.phase("diff: compare keys and hashes", total=None, unit="rows")
            res.counts = compare_keys(con, collections)
            # The change set is written even when empty: the caller asked for the file.
            if out or ndjson or ignore_segs:
                changed = sum(c[k] for c in res.counts.values() for k in ("added", "deleted", "modified"))
                progress.phase("diff: write changes", total=changed)
                res.changes_written = _write_changes(con, res, ignore_segs, out, ndjson, (sa, sb), collections)
        finally:
            con.close()
    res.seconds = time.perf_counter() - t0
    return res


def _write_changes(
    con: duckdb.DuckDBPyConnection,
    res: DiffResult,
    ignore: list[tuple[str, ...]],
    out: str | None,
    ndjson: str | None,
    stages: tuple[Stage, Stage],
    collections: list[str] | None = None,
) -> int:
    """Stream the change set to Parquet and/or NDJSON; each file appears only once complete."""
    written = 0
    kept: dict[str, int] = {}  # modified rows left after ignoring paths, per collection
    with contextlib.ExitStack() as stack:
        pq_writer = None
        nd = None
        if out:
            fs, path = _fs.filesystem(out)
            schema = CHANGESET_SCHEMA.with_metadata(
                {b"stacbatch": CHANGESET_FORMAT, b"a": res.a.encode(), b"b": res.b.encode()}
            )
            sink = stack.enter_context(_fs.atomic_sink(fs, path))
            pq_writer = stack.enter_context(pq.ParquetWriter(sink, schema, compression="zstd", compression_level=1))
        if ndjson:
            fs, path = _fs.filesystem(ndjson)
            nd = stack.enter_context(_fs.atomic_sink(fs, path))
        for table in change_batches(con, ignore, stages=stages, collections=collections):
            if ignore:
                modified = table.filter(pc.equal(table["kind"], "modified"))["collection"]
                for row in pc.value_counts(modified).to_pylist():
                    kept[row["values"]] = kept.get(row["values"], 0) + row["counts"]
            if pq_writer is not None:
                pq_writer.write_table(table)
            if nd is not None:
                nd.write(_ndjson_lines(table))
            written += table.num_rows
            current().advance(table.num_rows)
    if ignore:  # a modified row whose changes are all ignored counts as unchanged
        for c, counts in res.counts.items():
            moved = counts["modified"] - kept.get(c, 0)
            counts["modified"] -= moved
            counts["unchanged"] += moved
    return written


def _ndjson_lines(table: pa.Table) -> bytes:
    """NDJSON of a change set batch: everything but the query columns; ``item`` nested as JSON."""
    out = []
    cols = {n: table[n].to_pylist() for n in ("collection", "id", "kind", "hash_before", "hash_after", "paths")}
    items = table["item"].cast(pa.string()).to_pylist() if table.num_rows else []
    for n in range(table.num_rows):
        rec = {k: v[n] for k, v in cols.items()}
        line = _json.dumps(rec)
        if items[n] is not None:
            line = line[:-1] + b',"item":' + items[n].encode() + b"}"
        out.append(line + b"\n")
    return b"".join(out)
