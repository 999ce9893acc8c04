"""Routing rows to partitions, and placing a worker's routed rows: written as stage files where it can, else spilled
for the loading process to gather."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stacbatch.stage._files import Written, _time_key, write_sorted
from stacbatch.stage._parse import Spill, write_parts

#: (collection, bucket or None, first row, rows): one partition's contiguous slice of a routed table
Group = tuple[str, str | None, int, int]


@dataclass(frozen=True)
class Router:
    """Assigns rows to partitions. Picklable: worker processes route their own rows, so the loading process only
    appends ready slices to spill files."""

    partitioning: dict[str, str]
    default: str

    def route(self, table: pa.Table) -> tuple[pa.Table, list[Group]]:
        """The table with each partition's rows contiguous (input order kept within one), and the slices."""
        colls = table["collection"]
        names = pc.unique(colls).to_pylist()
        schemes = {c: self.partitioning.get(c, self.default) for c in names}
        buckets = bucket_column(table, colls, schemes)
        key = pc.binary_join_element_wise(colls, buckets, "\x00")
        codes = pc.dictionary_encode(key).combine_chunks()
        dictionary = codes.dictionary.to_pylist()
        if len(dictionary) == 1:
            grouped = table
            bounds = [0, table.num_rows]
            values = [0]
        else:
            order = pc.sort_indices(codes.indices)  # stable: input order within a partition
            grouped = table.take(order)
            sorted_codes = codes.indices.take(order).to_numpy()
            vals, starts = np.unique(sorted_codes, return_index=True)
            values = vals.tolist()
            bounds = [*starts.tolist(), len(sorted_codes)]
        groups: list[Group] = []
        for i, code in enumerate(values):
            collection, bucket = dictionary[code].rsplit("\x00", 1)  # a bucket has no NUL; a collection id may
            groups.append((collection, bucket or None, bounds[i], bounds[i + 1] - bounds[i]))
        return grouped, groups


def bucket_column(table: pa.Table, colls: pa.ChunkedArray, schemes: dict[str, str]) -> pa.ChunkedArray:
    """Per row, its time bucket under its collection's scheme ("" for unpartitioned, "unknown" when undated)."""
    t = _time_key(table)
    used = set(schemes.values())
    out = pa.chunked_array([pa.repeat("", table.num_rows)]) if "none" in used else None
    for scheme in ("year", "month"):
        if scheme not in used:
            continue
        text = _bucket_text(t, scheme)
        if out is None and used == {scheme}:
            return text
        mask = pc.is_in(colls, value_set=pa.array([c for c, s in schemes.items() if s == scheme], pa.string()))
        out = text if out is None else pc.if_else(mask, text, out)
    assert out is not None
    return out


def _bucket_text(t: pa.ChunkedArray, scheme: str) -> pa.Array:
    """ "YYYY" or "YYYY-MM" of each timestamp, "unknown" for none: each distinct bucket formatted once (Arrow's
    strftime took ~1.3 us a row, more than the rest of routing together)."""
    arr = t.combine_chunks() if t.num_chunks != 1 else t.chunk(0)
    us = pc.fill_null(arr.cast(pa.int64()), 0).to_numpy().astype("datetime64[us]")
    buckets = us.astype("datetime64[Y]" if scheme == "year" else "datetime64[M]")
    distinct, index = np.unique(buckets, return_inverse=True)
    labels = pa.array([str(b) for b in distinct] + ["unknown"], pa.string())
    if arr.null_count:
        index = np.where(arr.is_null().to_numpy(zero_copy_only=False), len(distinct), index)
    return labels.take(pa.array(index.astype(np.int32)))


#: a routed partition's rows, as a worker left them: spilled (``Spill``) or written as stage files (``Written``)
Part = tuple[str, str | None, Spill | Written]


@dataclass(frozen=True)
class Placement:
    """Where a worker puts the rows it parsed or mapped (picklable; built by ``PartitionWriter.placement``).

    A partition's rows in one unit that would fill a quarter of a stage file or more are sorted and written as
    stage files right there, when the partition's scheme is settled: the collection is staged already, or has at
    least ``time_bucket_min_items`` rows in this unit alone (so it cannot be flattened to one partition later).
    Such a partition's files then overlap in time, as a large partition's files do anyway (each is sorted). The
    rest is spilled for the loading process to gather. Writing in the worker saves the spill's write and re-read
    and a final phase in which the loading process waits on the partition writers.
    """

    router: Router
    fs: Any
    root: str
    run_id: str
    settings: dict[str, Any]
    spill_dir: str
    audit: bool
    plans: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __call__(self, table: pa.Table, prefix: str) -> list[Part]:
        grouped, groups = self.router.route(table)
        rows: dict[str, int] = {}
        for collection, _bucket, _start, n in groups:
            rows[collection] = rows.get(collection, 0) + n
        settled = {
            c for c, n in rows.items() if c in self.router.partitioning or n >= self.settings["time_bucket_min_items"]
        }
        min_rows = max(1, int(self.settings["file_max_rows"]) // 4)
        min_bytes = int(self.settings["file_max_bytes"]) // 4
        direct: list[Group] = []
        spilled: list[Group] = []
        for g in groups:
            collection, _bucket, start, n = g
            big = collection in settled and (n >= min_rows or _item_bytes(grouped, start, n) >= min_bytes)
            (direct if big else spilled).append(g)
        parts: list[Part] = list(write_parts(grouped, spilled, self.spill_dir, prefix)) if spilled else []
        for collection, bucket, start, n in direct:
            scheme = self.router.partitioning.get(collection, self.router.default)
            written = write_sorted(
                self.fs,
                self.root,
                self.run_id,
                self.settings,
                (collection, scheme, bucket),
                grouped.slice(start, n),
                f"{prefix}-",
                self.spill_dir if self.audit else None,
                self.plans.get(collection),
            )
            parts.append((collection, bucket, written))
        return parts


def _item_bytes(table: pa.Table, start: int, n: int) -> int:
    return sum(c.nbytes for c in table["item"].slice(start, n).chunks)
