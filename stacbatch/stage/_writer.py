"""Buffer incoming rows per collection and write bounded, sorted GeoParquet files under fresh names.

Nothing written here is visible until the manifest names it, so a crash only leaves unreferenced files behind.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stacbatch import _fs
from stacbatch._rows import STAGE_SCHEMA
from stacbatch.stage._geoparquet import geo_metadata
from stacbatch.stage._layout import partition_dir

#: Rows buffered across all collections before the largest buffer is flushed (bounds peak memory).
BUFFER_CAP_BYTES = 96 * 1024 * 1024


def _time_key(table: pa.Table) -> pa.ChunkedArray:
    return pc.coalesce(table["datetime"], table["start_datetime"])


def file_stats(table: pa.Table) -> dict[str, Any]:
    lo = pc.min(pc.coalesce(table["start_datetime"], table["datetime"])).as_py()
    hi = pc.max(pc.coalesce(table["end_datetime"], table["datetime"])).as_py()
    from stacbatch.stage._geoparquet import bbox_of

    return {
        "rows": table.num_rows,
        "item_bytes": int(pc.sum(pc.binary_length(table["item"].cast(pa.string()))).as_py() or 0),
        "datetime_min": lo.isoformat().replace("+00:00", "Z") if lo else None,
        "datetime_max": hi.isoformat().replace("+00:00", "Z") if hi else None,
        "bbox": bbox_of(table),
    }


def sort_for_stage(table: pa.Table, by_collection: bool = False) -> pa.Table:
    """Rows sorted by time (datetime, else start_datetime; undated last), then id: fast time-range pruning."""
    tmp = table.select(["collection", "id"]).append_column("__t", _time_key(table))
    keys = [("__t", "ascending", "at_end"), ("id", "ascending", "at_end")]
    if by_collection:
        keys.insert(0, ("collection", "ascending", "at_end"))
    return table.take(pc.sort_indices(tmp, sort_keys=keys))


def write_stage_file(
    fs: Any, root: str, rel: str, table: pa.Table, row_group_rows: int, compression: str = "zstd"
) -> dict[str, Any]:
    """Write one stage file (already sorted) and return its manifest entry.

    ``compression="none"`` is for files the same load will merge (see _compact): compressing them would be
    wasted work, and no uncompressed file is ever committed.
    """
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
            compression=compression,
            compression_level=1 if compression == "zstd" else None,
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
    if compression != "zstd":
        entry["compression"] = compression
    entry.update(file_stats(table))
    return entry


class PartitionWriter:
    """Buffers stage-schema batches and, when the buffer is full, sorts it once by (collection, time, id) and
    writes one file per (collection, time bucket) slice on a background thread (pyarrow releases the GIL while
    it encodes and compresses, so parsing goes on meanwhile)."""

    def __init__(self, fs: Any, root: str, run_id: str, settings: dict[str, Any], partitioning: dict[str, str]) -> None:
        self.fs = fs
        self.root = root
        self.run_id = run_id
        self.settings = settings
        #: collection -> scheme; collections new to the stage are decided at their first write
        self.partitioning = dict(partitioning)
        self.new_schemes: dict[str, str] = {}
        self.entries: list[dict[str, Any]] = []
        self._batches: list[pa.RecordBatch] = []
        self._buffered = 0
        self._seq = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stacbatch-writer")
        self._pending: list[Future[list[dict[str, Any]]]] = []

    def add(self, batch: pa.RecordBatch) -> None:
        self._batches.append(batch)
        self._buffered += batch.column(7).nbytes
        if self._buffered >= BUFFER_CAP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._batches:
            return
        table = pa.Table.from_batches(self._batches, schema=STAGE_SCHEMA)
        self._batches = []
        self._buffered = 0
        self._wait(max_pending=0)  # at most one table being written while the next one fills
        self._pending.append(self._pool.submit(self._write, table))

    def _wait(self, max_pending: int) -> None:
        while len(self._pending) > max_pending:
            self.entries.extend(self._pending.pop(0).result())

    def _scheme(self, collection: str) -> str:
        scheme = self.partitioning.get(collection)
        if scheme is None:
            # Provisional for a collection new to the stage: the load decides at its end, from the real count,
            # whether it stays time-bucketed or is flattened into one partition (see _compact).
            scheme = self.settings["time_bucket"]
            self.partitioning[collection] = scheme
            self.new_schemes[collection] = scheme
        return scheme

    def _write(self, table: pa.Table) -> list[dict[str, Any]]:
        table = sort_for_stage(table, by_collection=True)
        out: list[dict[str, Any]] = []
        offset = 0
        for run in pc.value_counts(table["collection"]):  # collections are contiguous after the sort
            n = run["counts"].as_py()
            collection = run["values"].as_py()
            part = table.slice(offset, n)
            offset += n
            scheme = self._scheme(collection)
            for bucket, group in _buckets(part, scheme):
                for start in range(0, group.num_rows, self.settings["file_max_rows"]):
                    chunk = group.slice(start, self.settings["file_max_rows"])
                    self._seq += 1
                    rel = f"{partition_dir(collection, scheme, bucket)}/part-{self.run_id}-{self._seq:05d}.parquet"
                    # Small pieces will be merged by this load's compaction: write them uncompressed.
                    small = chunk.num_rows < self.settings["file_max_rows"] // 2
                    entry = write_stage_file(
                        self.fs, self.root, rel, chunk, self.settings["row_group_rows"], "none" if small else "zstd"
                    )
                    entry["bucket"] = bucket
                    entry["run"] = self.run_id
                    out.append(entry)
        return out

    def close(self) -> list[dict[str, Any]]:
        self._flush()
        self._wait(max_pending=0)
        self._pool.shutdown()
        return self.entries

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _buckets(table: pa.Table, scheme: str) -> list[tuple[str | None, pa.Table]]:
    """Split a time-sorted table by time bucket; equal buckets are contiguous (undated rows come last)."""
    if scheme == "none":
        return [(None, table)]
    fmt = "%Y" if scheme == "year" else "%Y-%m"
    buckets = pc.fill_null(pc.strftime(_time_key(table), format=fmt), "unknown")
    groups = []
    offset = 0
    for v in pc.value_counts(buckets):
        n = v["counts"].as_py()
        groups.append((v["values"].as_py(), table.slice(offset, n)))
        offset += n
    return groups
