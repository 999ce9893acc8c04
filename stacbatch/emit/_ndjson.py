"""NDJSON out: the staged JSON text, byte for byte as stored, one item per line.

Each file is written under a temporary name and renamed over the target when complete, so a killed emit leaves
the previous file as it was.
"""

from __future__ import annotations

import contextlib
import gzip
import posixpath
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stacbatch.emit._common import EmitResult, begin_progress, check_where, iter_items, selected_collections
from stacbatch.emit._target import file_output, kill_point, refuse_stage_target
from stacbatch.engine import _fs
from stacbatch.engine._layout import encode as path_name
from stacbatch.stage import Stage


def ndjson_bytes(column: pa.Array) -> memoryview:
    """The items of a JSON/string column as NDJSON bytes, built in Arrow (no Python string per item)."""
    text = column.storage if isinstance(column.type, pa.BaseExtensionType) else column
    newline = pa.scalar("\n", pa.large_string())
    lines = pc.binary_join_element_wise(text.cast(pa.large_string()), newline, pa.scalar("", pa.large_string()))
    _, offsets, data = lines.buffers()
    offs = np.frombuffer(offsets, dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
    return memoryview(data)[int(offs[0]) : int(offs[-1])]


@contextlib.contextmanager
def _output(fs: Any, path: str) -> Iterator[Any]:
    with file_output(fs, path) as raw:
        if not path.endswith(".gz"):
            yield raw
            return
        # The header names the final file, not the temporary one
        with gzip.GzipFile(filename=posixpath.basename(path), mode="wb", fileobj=raw) as gz:
            yield gz


def _write_collection(stage: Stage, cid: str, where: str | None, out: Any) -> int:
    n = 0
    for batch in iter_items(stage, cid, where):
        if batch.num_rows:
            out.write(ndjson_bytes(batch.column(0)))
            n += batch.num_rows
            kill_point("emit:file_partial")
    return n


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
    file, anything else a folder. Every file replaces the old one only once complete.
    """
    t0 = time.perf_counter()
    chosen = selected_collections(stage, collections)
    check_where(stage, where)
    begin_progress(stage, chosen, where, "emit ndjson")
    fs, path = _fs.filesystem(to)
    refuse_stage_target(stage, fs, path, to)
    if split is None:
        split = not path.lower().removesuffix(".gz").endswith((".ndjson", ".jsonl"))
    result = EmitResult()
    if not split:
        fs.makedirs(path.rsplit("/", 1)[0] or ".", exist_ok=True)
        with _output(fs, path) as out:
            for cid in chosen:
                n = _write_collection(stage, cid, where, out)
                result.items += n
                result.collections += int(n > 0)
        result.files.append(to)
    else:
        fs.makedirs(path, exist_ok=True)
        for cid in chosen:
            name = _fs.join(path, f"{path_name(cid)}.ndjson")
            with _output(fs, name) as out:
                n = _write_collection(stage, cid, where, out)
            if n:
                result.items += n
                result.collections += 1
                result.files.append(name)
            else:  # nothing selected: no file for this collection, as before
                fs.rm(name)
    result.seconds = time.perf_counter() - t0
    return result
