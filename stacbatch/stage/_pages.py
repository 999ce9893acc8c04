"""Chosen rows of a stage file, decompressing only the pages that hold them.

pyarrow and DuckDB read whole column chunks: a 1% sample spread over a stage would materialise every item text
(~3.7 GB for 1M items, ~3 s in DuckDB) to keep 37 MB of it. Stage files are written for this (``_writer``): the item
column is a required BYTE_ARRAY, PLAIN-encoded in small v1 data pages, LZ4-compressed, without a dictionary. For
such a chunk the kernel (``take_chunk``) walks the page headers, decompresses the pages with a wanted row and copies
out just those values. Other PLAIN chunks (zstd pages, nullable or fixed-width columns) go page by page here, with
pyarrow's codecs and the kernel's header reader. Anything else (dictionaries, v2 pages, other encodings, structs,
repeated columns) is read through pyarrow, so any valid file gives the right answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stacbatch.engine import _fs

try:
    from stacbatch.kernel import _kernel
except ImportError:  # pragma: no cover - the kernel is optional; pyarrow reads the chunk
    _kernel = None  # type: ignore[assignment]

# Parquet codec name as pyarrow reports it -> pyarrow codec (None: stored uncompressed). pyarrow reports LZ4_RAW
# as "LZ4"; a block that does not decode as such raises, and the chunk is read through pyarrow instead.
_CODECS = {
    "UNCOMPRESSED": None,
    "ZSTD": "zstd",
    "SNAPPY": "snappy",
    "GZIP": "gzip",
    "BROTLI": "brotli",
    "LZ4_RAW": "lz4_raw",
    "LZ4": "lz4_raw",
}
#: Codecs the kernel decompresses itself (take_chunk): pages stored as they are, and LZ4 blocks
_C_CODECS = {None: 0, "lz4_raw": 1}
_DATA_PAGE = 0
_PLAIN = 0


@dataclass(frozen=True)
class _Page:
    first_row: int
    rows: int
    start: int  # offset of the page body in the chunk
    size: int  # compressed size of the body
    raw_size: int  # uncompressed size of the body
    kind: int
    encoding: int


class _Unsupported(Exception):
    """A layout this reader leaves to pyarrow."""


def _varint(b: Any, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        x = b[i]
        i += 1
        out |= (x & 0x7F) << shift
        shift += 7
        if x < 0x80:
            return out, i


def _pages(chunk: Any) -> list[_Page]:
    """The pages of a column chunk, from their Thrift headers (kernel ``parquet_pages``)."""
    assert _kernel is not None
    rec = np.frombuffer(_kernel.parquet_pages(chunk), np.int64).reshape(-1, 7)
    return [_Page(*map(int, r)) for r in rec]


_FIXED: dict[str, np.dtype[Any]] = {
    "INT64": np.dtype("<i8"),
    "DOUBLE": np.dtype("<f8"),
    "INT32": np.dtype("<i4"),
    "FLOAT": np.dtype("<f4"),
}


def _levels(data: Any, n: int, max_def: int) -> tuple[np.ndarray | None, int]:
    """The definition levels of a v1 page's n values (None when the column is required) and where the values
    start. Levels are an RLE / bit-packed hybrid behind a 4-byte length."""
    if max_def == 0:
        return None, 0
    b = memoryview(data).cast("B")  # pyarrow buffers export signed chars
    size = int.from_bytes(b[:4], "little")
    i, end = 4, 4 + size
    width = max_def.bit_length()
    runs: list[np.ndarray] = []
    got = 0
    while i < end and got < n:
        head, i = _varint(b, i)
        if head & 1:  # bit-packed: (head >> 1) groups of 8 values, `width` bits each
            count = (head >> 1) * 8
            nbytes = (head >> 1) * width
            bits = np.unpackbits(np.frombuffer(b[i : i + nbytes], np.uint8), bitorder="little")
            vals = bits.reshape(-1, width) @ (1 << np.arange(width))
            i += nbytes
        else:  # RLE: one value repeated
            count = head >> 1
            nb = (width + 7) // 8
            vals = np.full(count, int.from_bytes(b[i : i + nb], "little"))
            i += nb
        runs.append(vals)
        got += count
    if got < n:
        raise _Unsupported("levels do not cover the page")
    return np.concatenate(runs)[:n], end


def _page_values(data: Any, page: _Page, rel: np.ndarray, physical: str, max_def: int, typ: pa.DataType) -> pa.Array:
    """The values at page positions ``rel`` of one decompressed page, nulls where not defined."""
    levels, start = _levels(data, page.rows, max_def)
    if levels is None:
        present = None
        positions = rel
    else:
        defined = levels == max_def
        present = defined[rel]
        positions = (np.cumsum(defined) - 1)[rel[present]]
    if physical == "BYTE_ARRAY":
        off, text = _kernel.plain_take(memoryview(data)[start:], positions.astype(np.int64).tobytes())
        values = pa.Array.from_buffers(typ, len(positions), [None, pa.py_buffer(off), pa.py_buffer(text)])
    else:
        dtype = _FIXED[physical]
        count = page.rows if levels is None else int(np.count_nonzero(levels == max_def))
        values = pa.array(np.frombuffer(data, dtype, count, start)[positions], typ)
    if present is None or present.all():
        return values
    index = np.full(len(rel), -1, np.int64)
    index[present] = np.arange(len(positions))
    return values.take(pa.array(index, mask=index < 0))


def _chunk_values(
    chunk: Any, codec: pa.Codec | None, rows: np.ndarray, physical: str, max_def: int, typ: pa.DataType
) -> pa.Array:
    """The values at ``rows`` (sorted, relative to the chunk) of one column chunk."""
    if _kernel is None:
        raise _Unsupported("no C kernel")
    view = memoryview(chunk)
    pages = _pages(chunk)
    if any(p.kind != _DATA_PAGE or p.encoding != _PLAIN for p in pages):
        raise _Unsupported("dictionary, v2 or not PLAIN pages")
    firsts = np.fromiter((p.first_row for p in pages), np.int64, len(pages))
    where = np.searchsorted(firsts, rows, side="right") - 1
    bounds = np.flatnonzero(np.diff(where)) + 1
    out = []
    for part in np.split(np.arange(len(rows)), bounds) if len(rows) else []:
        page = pages[int(where[part[0]])]
        body = view[page.start : page.start + page.size]
        data = codec.decompress(body, decompressed_size=page.raw_size) if codec is not None else body
        out.append(_page_values(data, page, rows[part] - page.first_row, physical, max_def, typ))
    return pa.concat_arrays(out) if out else pa.array([], typ)


def _value_type(typ: pa.DataType) -> pa.DataType:
    """The Arrow type the page reader builds for a leaf of this type (cast to the file's type after)."""
    if isinstance(typ, pa.BaseExtensionType):
        typ = typ.storage_type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return pa.large_string()
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return pa.large_binary()
    return typ


def _storage(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.storage if isinstance(values.type, pa.BaseExtensionType) else values


class _File:
    def __init__(self, f: Any) -> None:
        self.f = f
        self.pf = pq.ParquetFile(f)
        self.md = self.pf.metadata
        self.leaves = {self.md.schema.column(c).path: c for c in range(self.md.num_columns)}
        self.starts = np.cumsum([0] + [self.md.row_group(g).num_rows for g in range(self.md.num_row_groups)])

    def leaf(self, path: str, typ: pa.DataType, g: int, rel: np.ndarray) -> pa.Array:
        """Values of leaf column ``path`` at rows ``rel`` of row group g, read page by page."""
        ci = self.leaves[path]
        col = self.md.schema.column(ci)
        meta = self.md.row_group(g).column(ci)
        codec_name = _CODECS.get(meta.compression, "?")
        if (
            _kernel is None
            or col.max_repetition_level
            or codec_name == "?"
            or meta.has_dictionary_page
            or not (col.physical_type == "BYTE_ARRAY" or col.physical_type in _FIXED)
        ):
            raise _Unsupported(path)
        if isinstance(self.f, pa.NativeFile):  # memory-mapped: a view of the file, no copy
            self.f.seek(meta.data_page_offset)
            chunk: Any = self.f.read_buffer(meta.total_compressed_size)
        else:
            self.f.seek(meta.data_page_offset)
            chunk = self.f.read(meta.total_compressed_size)
        if col.physical_type == "BYTE_ARRAY" and not col.max_definition_level and codec_name in _C_CODECS:
            # the whole chunk in the kernel, decompressing only the pages that hold a wanted row
            got = _kernel.take_chunk(chunk, _C_CODECS[codec_name], rel.astype(np.int64).tobytes())
            if got is not None:
                off, data = got
                return pa.Array.from_buffers(_value_type(typ), len(rel), [None, pa.py_buffer(off), pa.py_buffer(data)])
        codec = pa.Codec(codec_name) if codec_name else None
        return _chunk_values(chunk, codec, rel, col.physical_type, col.max_definition_level, _value_type(typ))

    def column(self, field: pa.Field, g: int, rel: np.ndarray) -> pa.Array:
        typ = field.type.storage_type if isinstance(field.type, pa.BaseExtensionType) else field.type
        try:
            if pa.types.is_struct(typ):  # small columns (bbox): pyarrow reads them whole
                raise _Unsupported("struct")
            return self.leaf(field.name, typ, g, rel)
        except (_Unsupported, KeyError, IndexError, ValueError, OSError, pa.ArrowException):
            # any other layout (or a page this reader does not follow): pyarrow reads the row group's column
            values = _storage(self.pf.read_row_group(g, columns=[field.name]).column(0).take(pa.array(rel)))
            return values.cast(_value_type(typ))


def take_rows(fs: Any, path: str, columns: list[str], rows: np.ndarray) -> dict[str, pa.Array]:
    """Values of top-level ``columns`` of a stage file at file rows ``rows`` (int64, ascending, distinct), in that
    order. Strings come as large_string, binary as large_binary, JSON as its text; nothing else of the file is
    decompressed beyond the pages that hold these rows."""
    rows = np.asarray(rows, np.int64)
    with pa.memory_map(path) if _fs.is_local(fs) else fs.open(path, "rb") as f:
        pf = _File(f)
        schema = pf.pf.schema_arrow
        starts = pf.starts
        if len(rows) and (rows[0] < 0 or rows[-1] >= starts[-1]):
            raise IndexError(f"{path}: row {rows[-1]} beyond the file's {starts[-1]} rows")
        groups = np.searchsorted(starts, rows, side="right") - 1
        out: dict[str, list[pa.Array]] = {c: [] for c in columns}
        for g in np.unique(groups):
            rel = rows[groups == g] - starts[int(g)]
            for c in columns:
                out[c].append(pf.column(schema.field(c), int(g), rel))
    result = {}
    for c in columns:
        typ = _value_type(schema.field(c).type)
        result[c] = pa.concat_arrays(out[c]) if out[c] else pa.array([], typ)
    return result
