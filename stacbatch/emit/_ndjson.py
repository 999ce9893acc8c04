"""NDJSON out: the staged JSON text, byte for byte as stored, one item per line."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stacbatch import _fs
from stacbatch.emit._common import EmitResult, check_where, iter_items, selected_collections
from stacbatch.stage._layout import encode
from stacbatch.stage._stage import Stage


def ndjson_bytes(column: pa.Array) -> memoryview:
    """The items of a JSON/string column as NDJSON bytes, built in Arrow (no Python string per item)."""
    text = column.storage if isinstance(column.type, pa.BaseExtensionType) else column
    newline = pa.scalar("\n", pa.large_string())
    lines = pc.binary_join_element_wise(text.cast(pa.large_string()), newline, pa.scalar("", pa.large_string()))
    _, offsets, data = lines.buffers()
    offs = np.frombuffer(offsets, dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    return memoryview(data)[int(offs[0]) : int(offs[-1])]


def emit_ndjson(
    stage: Stage,
    to: str,
    *,
    collections: list[str] | None = None,
    where: str | None = None,
    split: bool | None = None,
) -> EmitResult:
    """Write items as NDJSON: one file per collection into folder ``to`` (``split``), or one file ``to``.

    ``split=None`` decides from the target: a path ending in ``.ndjson``/``.jsonl`` (optionally ``.gz``) is one
    file, anything else a folder.
    """
    t0 = time.perf_counter()
    chosen = selected_collections(stage, collections)
    check_where(stage, where)
    fs, path = _fs.filesystem(to)
    if split is None:
        split = not path.lower().removesuffix(".gz").endswith((".ndjson", ".jsonl"))
    result = EmitResult()
    out: Any = None
    if not split:
        fs.makedirs(path.rsplit("/", 1)[0] or ".", exist_ok=True)
        out = fs.open(path, "wb", compression="gzip" if path.endswith(".gz") else None)
        result.files.append(to)
    else:
        fs.makedirs(path, exist_ok=True)
    try:
        for cid in chosen:
            n_before = result.items
            target = out
            if split:
                name = _fs.join(path, f"{encode(cid)}.ndjson")
                target = fs.open(name, "wb")
            try:
                for batch in iter_items(stage, cid, where):
                    if batch.num_rows:
                        target.write(ndjson_bytes(batch.column(0)))
                        result.items += batch.num_rows
            finally:
                if split:
                    target.close()
            if split:
                if result.items == n_before:
                    fs.rm(name)
                else:
                    result.files.append(name)
            if result.items > n_before:
                result.collections += 1
    finally:
        if out is not None:
            out.close()
    result.seconds = time.perf_counter() - t0
    return result
