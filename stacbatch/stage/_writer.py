"""Buffer incoming rows per collection and write bounded, sorted GeoParquet files under fresh names.

Nothing written here is visible until the manifest names it, so a crash only leaves unreferenced files behind.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stacbatch import _fs
from stacbatch._rows import STAGE_SCHEMA
from stacbatch.stage._geoparquet import geo_metadata
from stacbatch.stage._layout import partition_dir

#: Rows buffered across all collections before the largest buffer is flushed (bounds peak memory).
BUFFER_CAP_BYTES = 256 * 1024 * 1024


def _time_key(table: pa.Table) -> pa.ChunkedArray:
    return pc.coalesce(table["datetime"], table["start_datetime"])


def file_stats(table: pa.Table) -> dict[str, Any]:
    lo = pc.min(pc.coalesce(table["start_datetime"], table["datetime"])).as_py()
    hi = pc.max(pc.coalesce(table["end_datetime"], table["datetime"])).as_py()
    from stacbatch.stage._geoparquet import bbox_of

    return {
        "rows": table.num_rows,
        "datetime_min": lo.isoformat().replace("+00:00", "Z") if lo else None,
        "datetime_max": hi.isoformat().replace("+00:00", "Z") if hi else None,
        "bbox": bbox_of(table),
    }


def sort_for_stage(table: pa.Table) -> pa.Table:
    """Rows sorted by time (datetime, else start_datetime; undated last), then id: fast time-range pruning."""
    key = _time_key(table)
    tmp = table.append_column("__t", key)
    order = pc.sort_indices(tmp, sort_keys=[("__t", "ascending", "at_end"), ("id", "ascending", "at_end")])
    return table.take(order)


def write_stage_file(fs: Any, root: str, rel: str, table: pa.Table, row_group_rows: int) -> dict[str, Any]:
    """Write one stage file (already sorted) and return its manifest entry."""
    table = table.replace_schema_metadata({b"geo": geo_metadata(table)})
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
            row_group_size=row_group_rows,
            compression="zstd",
            compression_level=3,
            use_dictionary=["collection", "stage_run"],
            write_statistics=[
                "collection",
                "id",
                "datetime",
                "start_datetime",
                "end_datetime",
                "stage_seq",
            ],
            sorting_columns=None,
        )
    finally:
        if not isinstance(sink, str):
            sink.close()
    entry = {"path": rel, "collection": table["collection"][0].as_py(), "bytes": fs.size(path)}
    entry.update(file_stats(table))
    return entry


@dataclass
class _Buffer:
    batches: list[pa.RecordBatch]
    rows: int = 0
    nbytes: int = 0


class PartitionWriter:
    """Routes stage-schema batches to per-collection buffers and writes files on a background thread."""

    def __init__(
        self,
        fs: Any,
        root: str,
        run_id: str,
        settings: dict[str, Any],
        partitioning: dict[str, str],
    ) -> None:
        self.fs = fs
        self.root = root
        self.run_id = run_id
        self.settings = settings
        #: collection -> scheme; collections new to the stage are decided at their first flush
        self.partitioning = dict(partitioning)
        self.new_schemes: dict[str, str] = {}
        self.entries: list[dict[str, Any]] = []
        self._buffers: dict[str, _Buffer] = {}
        self._buffered = 0
        self._seq = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stacbatch-writer")
        self._pending: list[Future[list[dict[str, Any]]]] = []

    def add(self, batch: pa.RecordBatch) -> None:
        colls = batch.column(0)
        if pc.count_distinct(colls).as_py() == 1:
            self._route(colls[0].as_py(), batch)
            return
        order = pc.sort_indices(colls)
        sorted_batch = batch.take(order)
        counts = pc.value_counts(sorted_batch.column(0))
        offset = 0
        for entry in counts:
            n = entry["counts"].as_py()
            self._route(entry["values"].as_py(), sorted_batch.slice(offset, n))
            offset += n

    def _route(self, collection: str, batch: pa.RecordBatch) -> None:
        buf = self._buffers.setdefault(collection, _Buffer([]))
        buf.batches.append(batch)
        buf.rows += batch.num_rows
        size = batch.column(7).nbytes
        buf.nbytes += size
        self._buffered += size
        if buf.rows >= self.settings["file_max_rows"] or buf.nbytes >= self.settings["file_max_bytes"]:
            self._flush(collection)
        while self._buffered > BUFFER_CAP_BYTES and self._buffers:
            self._flush(max(self._buffers, key=lambda c: self._buffers[c].nbytes))

    def _scheme(self, collection: str, rows: int) -> str:
        scheme = self.partitioning.get(collection)
        if scheme is None:
            # A large collection gets time buckets; a small one stays a single partition (no tiny files).
            big = rows >= self.settings["time_bucket_min_items"]
            scheme = self.settings["time_bucket"] if big else "none"
            self.partitioning[collection] = scheme
            self.new_schemes[collection] = scheme
        return scheme

    def _flush(self, collection: str) -> None:
        buf = self._buffers.pop(collection)
        self._buffered -= buf.nbytes
        scheme = self._scheme(collection, buf.rows)
        table = pa.Table.from_batches(buf.batches, schema=STAGE_SCHEMA)
        self._wait(max_pending=1)
        self._pending.append(self._pool.submit(self._write, collection, scheme, table))

    def _wait(self, max_pending: int) -> None:
        while len(self._pending) > max_pending:
            self.entries.extend(self._pending.pop(0).result())

    def _write(self, collection: str, scheme: str, table: pa.Table) -> list[dict[str, Any]]:
        table = sort_for_stage(table)
        out: list[dict[str, Any]] = []
        if scheme == "none":
            groups = [(None, table)]
        else:
            fmt = "%Y" if scheme == "year" else "%Y-%m"
            buckets = pc.fill_null(pc.strftime(_time_key(table), format=fmt), "unknown")
            groups = []
            # Rows are time-sorted, so equal buckets are contiguous (undated rows, "unknown", come last).
            values = pc.value_counts(buckets)
            offset = 0
            for v in values:
                n = v["counts"].as_py()
                groups.append((v["values"].as_py(), table.slice(offset, n)))
                offset += n
        for bucket, part in groups:
            self._seq += 1
            rel = f"{partition_dir(collection, scheme, bucket)}/part-{self.run_id}-{self._seq:05d}.parquet"
            entry = write_stage_file(self.fs, self.root, rel, part, self.settings["row_group_rows"])
            entry["bucket"] = bucket
            entry["run"] = self.run_id
            out.append(entry)
        return out

    def close(self) -> list[dict[str, Any]]:
        for collection in list(self._buffers):
            self._flush(collection)
        self._wait(max_pending=0)
        self._pool.shutdown()
        return self.entries

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
