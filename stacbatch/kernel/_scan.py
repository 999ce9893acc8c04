"""NDJSON blocks -> stage batches through the C kernel (``_kernel.scan_lines``), zero Python objects per item.

The kernel takes every line it can compute exactly as the Python path would and hands back the others (bad JSON,
items with errors, escapes in ids, uncommon geometries or datetime forms) by line; the caller parses those with
``_rows.BatchBuilder``, which owns every error message. Rows keep their line order either way, so "last wins"
among duplicates holds whichever path a line took.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

from stacbatch.kernel import _canonical
from stacbatch.kernel._rows import BBOX, DEFAULT_COLLECTION, PARSED_SCHEMA, TS

try:  # see _json: without the kernel, callers take the pure-Python path
    from stacbatch.kernel import _kernel
except ImportError:  # pragma: no cover - a build without a C compiler
    _kernel = None  # type: ignore[assignment]

AVAILABLE = _kernel is not None


class Scanned:
    """One block: the kernel's rows as a record batch (with their line indexes) and the lines left to Python."""

    def __init__(
        self, batch: pa.RecordBatch | None, lines: np.ndarray, rest: list[tuple[int, int, int]], newlines: int
    ) -> None:
        self.batch = batch
        #: newline characters in the block
        self.newlines = newlines
        #: 0-based index of each batch row's line within the block
        self.lines = lines
        #: (line index, start, end) of each line the kernel left to Python
        self.rest = rest


def scan_block(data: bytes | memoryview) -> Scanned:
    assert _kernel is not None
    (taken, coll_off, coll, id_off, ids, ts, ts_valid, box, box_valid, geom_off, geom, geom_valid, item_off, item,
     canon_off, canon, line, fallback, count) = _kernel.scan_lines(data, DEFAULT_COLLECTION)  # fmt: skip
    newlines = count - 1 if len(data) and data[len(data) - 1] != 0x0A else count
    rest_arr = np.frombuffer(fallback, np.int64).reshape(-1, 3)
    rest = [(int(a), int(b), int(c)) for a, b, c in rest_arr.tolist()]
    lines = np.frombuffer(line, np.int64)
    if not taken:
        return Scanned(None, lines, rest, newlines)
    n = taken
    stamps = np.frombuffer(ts, np.int64).reshape(n, 3)
    stamp_ok = np.frombuffer(ts_valid, np.bool_).reshape(n, 3)
    corners = np.frombuffer(box, np.float64).reshape(n, 4)
    box_ok = np.frombuffer(box_valid, np.bool_)
    box_mask = _validity(box_ok)
    bbox = pa.StructArray.from_arrays(
        [pa.Array.from_buffers(pa.float64(), n, [box_mask, pa.py_buffer(corners[:, i].copy())]) for i in range(4)],
        fields=list(BBOX),
        mask=_bools(~box_ok),
    )
    arrays = [
        _strings(n, coll_off, coll),
        _strings(n, id_off, ids),
        *(
            pa.Array.from_buffers(TS, n, [_validity(stamp_ok[:, k]), pa.py_buffer(stamps[:, k].copy())])
            for k in range(3)
        ),
        bbox,
        pa.Array.from_buffers(
            pa.binary(), n, [_validity(np.frombuffer(geom_valid, np.bool_)), pa.py_buffer(geom_off), pa.py_buffer(geom)]
        ),
        pa.ExtensionArray.from_storage(pa.json_(pa.string()), _strings(n, item_off, item)),
        stream_hashes(canon_off, canon),
    ]
    return Scanned(pa.RecordBatch.from_arrays(arrays, schema=PARSED_SCHEMA), lines, rest, newlines)


def _strings(n: int, offsets: bytes, data: bytes) -> pa.Array:
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _bools(values: np.ndarray) -> pa.Array:
    """A numpy bool vector as an Arrow one, without ``pa.array`` (which imports pandas on first use)."""
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(np.packbits(values, bitorder="little"))])


def _validity(ok: np.ndarray) -> Any:
    if ok.all():
        return None
    return pa.py_buffer(np.packbits(ok, bitorder="little"))


def stream_hashes(offsets: Any, data: Any) -> pa.Array:
    """xxh3-128 of each item's canonical stream (the kernel wrote them end to end), as hex strings.

    Built from one hex text of all digests, not from a list of str: ``pa.array`` over a list imports pandas (its
    array-likes check), which costs every worker process half a second.
    """
    view = memoryview(data)
    ends = np.frombuffer(offsets, np.uint32).tolist()
    digest = xxhash.xxh3_128_digest
    text = b"".join([digest(view[a:b]) for a, b in itertools.pairwise(ends)]).hex().encode()
    n = len(ends) - 1
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(np.arange(0, 32 * n + 1, 32, dtype=np.int32)), pa.py_buffer(text)]
    )


def text_hashes(texts: pa.Array) -> pa.Array | None:
    """Content hashes (``_canonical.content_hash_text``) of a column of JSON texts, computed by the kernel over the
    column's buffers (no Python string per item); None without the kernel or for a column with nulls."""
    if _kernel is None or texts.null_count:
        return None
    if pa.types.is_large_string(texts.type) or pa.types.is_large_binary(texts.type):
        width: Any = np.int64
    elif pa.types.is_string(texts.type) or pa.types.is_binary(texts.type):
        width = np.int32
    else:
        return None
    bufs = texts.buffers()
    n = len(texts)
    offsets = np.frombuffer(bufs[1], width)[texts.offset : texts.offset + n + 1].astype(np.int64)
    ok, ends, streams = _kernel.canonical_texts(offsets, bufs[2] or b"")
    hashes = stream_hashes(ends, streams)
    good = np.frombuffer(ok, np.uint8)
    if good.all():
        return hashes
    # texts the kernel does not take (none from a mapping's SQL so far): the Python path, which says why
    values = hashes.to_pylist()
    for i in np.flatnonzero(good == 0).tolist():
        values[i] = _canonical.content_hash_text(texts[i].as_py())
    return pa.array(values, pa.string())


def string_hashes(strings: pa.ChunkedArray) -> np.ndarray | None:
    """A 64-bit hash (uint64) of each string, or None without the kernel."""
    if _kernel is None:
        return None
    parts = [np.zeros(0, np.uint64)]
    for chunk in strings.chunks:
        bufs = chunk.buffers()
        offsets = np.frombuffer(bufs[1], np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
        parts.append(np.frombuffer(_kernel.hash_strings(offsets, bufs[2] or b""), np.uint64))
    return np.concatenate(parts)


#: what the fetcher reads of one feature without decoding it: the JSON texts of id and properties.datetime,
#: start_datetime and end_datetime (None when absent)
FeatureIndex = tuple[bytes | None, bytes | None, bytes | None, bytes | None]


def page_index(page: bytes) -> tuple[bytes, list[FeatureIndex]] | None:
    """A STAC API page without its features (its ``features`` replaced by ``[]``) and an index of them, or None
    (no kernel, or a page it does not take: the caller decodes it whole)."""
    return _kernel.page_index(page) if _kernel is not None else None


def page_features(page: bytes) -> bytes | None:
    """A STAC API page's features as an NDJSON block (minified, one per line), or None (no kernel, or a page it
    does not take: the caller decodes it)."""
    found = _kernel.page_features(page) if _kernel is not None else None
    return None if found is None else found[0]


def drop_spare() -> None:
    """Free the kernel's spare block (kept for the next large buffer), e.g. when a different phase begins."""
    if _kernel is not None:
        _kernel.drop_spare()
