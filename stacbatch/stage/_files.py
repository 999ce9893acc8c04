"""Stage files: sorted, bounded GeoParquet written under fresh names, and their manifest entries.

Nothing written here is visible until the manifest names it, so a crash only leaves unreferenced files behind.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stacbatch.engine import _fs
from stacbatch.engine._layout import partition_dir
from stacbatch.kernel._rows import STAGE_SCHEMA
from stacbatch.kernel._scan import string_hashes
from stacbatch.stage import _assets
from stacbatch.stage._columns import MAX_COLUMNS, PREFIX, derive
from stacbatch.stage._geoparquet import bbox_of, geo_metadata


def _time_key(table: pa.Table) -> pa.ChunkedArray:
    return pc.coalesce(table["datetime"], table["start_datetime"])


def file_stats(table: pa.Table) -> dict[str, Any]:
    lo = pc.min(pc.coalesce(table["start_datetime"], table["datetime"])).as_py()
    hi = pc.max(pc.coalesce(table["end_datetime"], table["datetime"])).as_py()
    return {
        "rows": table.num_rows,
        "datetime_min": lo.isoformat().replace("+00:00", "Z") if lo else None,
        "datetime_max": hi.isoformat().replace("+00:00", "Z") if hi else None,
        "bbox": bbox_of(table),
    }


_SORT_KEYS = [("__t", "ascending", "at_end"), ("id", "ascending", "at_end")]


def stage_order(table: pa.Table) -> pa.Array:
    """Row order of stage files: time (datetime, else start_datetime; undated last), then id."""
    keys = table.select(["id"]).append_column("__t", _time_key(table))
    return pc.sort_indices(keys, sort_keys=_SORT_KEYS)


def sort_for_stage(table: pa.Table) -> pa.Table:
    return table.take(stage_order(table))


#: The item column is LZ4 (raw block format): it decompresses ~3x faster than zstd, which is what reading a
#: sample of items costs (diff's change set reads every page that holds a changed row), and compresses faster on
#: load, for ~40% more bytes on disk. Everything else is zstd.
ITEM_CODEC = "lz4"
#: Small pages (~16 items of ~4 KB) so that reading 1% of the items spread over a file decompresses ~15% of its
#: item pages rather than all of them; the other columns' pages stay large (48 KB holds ~1,200 ids). Measured on a
#: 1M-item stage: +5% bytes, full scans as fast.
PAGE_BYTES = 48 * 1024
PAGE_BATCH_ROWS = 16


def _leaves(name: str, typ: pa.DataType) -> list[str]:
    """Parquet column paths of an Arrow field, as pyarrow names them (per-column options are keyed by these: an
    option given by the field's name alone does not reach a nested column's leaves)."""
    if pa.types.is_struct(typ):
        return [leaf for f in typ for leaf in _leaves(f"{name}.{f.name}", f.type)]
    if pa.types.is_map(typ):
        return [f"{name}.key_value.key", *_leaves(f"{name}.key_value.value", typ.item_type)]
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return _leaves(f"{name}.list.element", typ.value_type)
    return [name]


def _codecs(schema: pa.Schema) -> tuple[dict[str, str], dict[str, int]]:
    """Per leaf column: codec and (for zstd) level, as pyarrow wants them (leaves as ``bbox.xmin``)."""
    codecs = {leaf: ITEM_CODEC if f.name == "item" else "zstd" for f in schema for leaf in _leaves(f.name, f.type)}
    return codecs, {k: 1 for k, v in codecs.items() if v == "zstd"}


#: leaves written with a dictionary: few distinct values per file (asset keys, types and roles; not hrefs)
_DICTIONARY = [
    "collection",
    "stage_run",
    *(leaf for leaf in _leaves(_assets.COLUMN, _assets.TYPE) if leaf != f"{_assets.COLUMN}.href.key_value.value"),
]


def stage_columns(table: pa.Table) -> pa.Table:
    """A stage file's table without its property columns (they are derived again whenever rows are written)."""
    return table.select(STAGE_SCHEMA.names).replace_schema_metadata(None).cast(STAGE_SCHEMA)


def write_stage_file(
    fs: Any, root: str, rel: str, table: pa.Table, settings: dict[str, Any], plan: dict[str, Any] | None
) -> dict[str, Any]:
    """Write one stage file (already sorted) with the property columns its collection's ``plan`` and the rows'
    texts give (``_columns.derive``), and return its manifest entry (``columns``: what the plan learns)."""
    derived = derive(table["item"], plan, int(settings.get("max_property_columns", MAX_COLUMNS)))
    for name, column in derived.columns.items():
        table = table.append_column(pa.field(PREFIX + name, column.type), column)
    assets, asset_report = _assets.asset_fields(table["item"])
    table = table.append_column(pa.field(_assets.COLUMN, assets.type), assets)
    table = table.replace_schema_metadata({b"geo": geo_metadata(table)})
    codecs, levels = _codecs(table.schema)
    path = _fs.join(root, rel)
    if _fs.is_local(fs):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        sink: Any = path
    else:
        sink = fs.open(path, "wb")
    try:
        pq.write_table(
            table,
            sink,
            row_group_size=int(settings["row_group_rows"]),
            compression=codecs,
            compression_level=levels,
            use_dictionary=_DICTIONARY,
            data_page_size=PAGE_BYTES,
            write_batch_size=PAGE_BATCH_ROWS,
            write_statistics=[
                "collection",
                "id",
                "datetime",
                "start_datetime",
                "end_datetime",
                "stage_seq",
                *(PREFIX + name for name, t in derived.types.items() if not t.startswith(("list", "struct"))),
            ],
            sorting_columns=None,
        )
    finally:
        if not isinstance(sink, str):
            sink.close()
    entry = {"path": rel, "collection": table["collection"][0].as_py(), "bytes": fs.size(path)}
    entry.update(file_stats(table))
    entry["columns"] = derived.report()
    entry["columns"]["assets"] = asset_report  # (its presence says the file has the asset_fields column)
    return entry


def _chunks(sizes: np.ndarray, max_rows: int, max_bytes: int) -> list[tuple[int, int]]:
    """Cut sorted rows into files of at most max_rows rows and about max_bytes of item text."""
    out = []
    lo = 0
    n = len(sizes)
    cum = np.cumsum(sizes, dtype=np.int64)
    while lo < n:
        base = int(cum[lo - 1]) if lo else 0
        hi = int(np.searchsorted(cum, base + max_bytes, side="right"))
        hi = max(lo + 1, min(hi, lo + max_rows, n))
        out.append((lo, hi))
        lo = hi
    return out


@dataclass(frozen=True)
class Written:
    """What writing one partition's rows left: manifest entries, a 64-bit hash of each row's id (None without the
    kernel; the loader proves ids distinct with them, without a query) and the Arrow file of the rows' audit keys
    (None: not asked for)."""

    entries: list[dict[str, Any]]
    keys: np.ndarray | None
    audit: str | None
    rows: int


def write_sorted(
    fs: Any,
    root: str,
    run_id: str,
    settings: dict[str, Any],
    where: tuple[str, str, str | None],
    table: pa.Table,
    tag: str,
    audit_dir: str | None,
    plan: dict[str, Any] | None = None,
) -> Written:
    """Sort one partition's rows (``where``: collection, scheme, bucket) and write them as stage files named
    ``part-{run_id}-{tag}NNNNN.parquet`` (``tag`` unique within the run's writes to that partition). ``audit_dir``:
    where to leave the rows' (collection, id, content_hash) in file order, for the audit of a first load."""
    collection, scheme, bucket = where
    keys = string_hashes(table["id"])
    order = stage_order(table)
    audit = None
    if audit_dir is not None:
        audit = os.path.join(audit_dir, f"audit-{uuid.uuid4().hex}.arrow")
        rows = table.select(["collection", "id", "content_hash"]).take(order)
        with pa.OSFile(audit, "wb") as sink, pa.ipc.new_file(sink, rows.schema) as writer:
            writer.write_table(rows)
    lengths = pa.chunked_array([pc.binary_length(c.storage) for c in table["item"].chunks], pa.int32())
    sizes = lengths.take(order).to_numpy()
    folder = partition_dir(collection, scheme, bucket)
    out = []
    for n, (lo, hi) in enumerate(_chunks(sizes, settings["file_max_rows"], settings["file_max_bytes"])):
        chunk = table.take(order[lo:hi])
        entry = write_stage_file(fs, root, f"{folder}/part-{run_id}-{tag}{n:05d}.parquet", chunk, settings, plan)
        entry["bucket"] = bucket
        entry["run"] = run_id
        out.append(entry)
    return Written(out, keys, audit, table.num_rows)
