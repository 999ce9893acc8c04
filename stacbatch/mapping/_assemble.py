"""Item texts by the C kernel: DuckDB computes only the item's leaves (typed columns), and ``assemble_items``
writes each item's JSON text and its canonical stream in one pass over them (``_kernel_assemble.h``). Building the
text by concatenation in DuckDB and parsing it again to hash it cost ~80% of a mapping's time.

Each leaf's kind is decided once, from the type DuckDB gives it: text is written as a JSON string, integers and
booleans as themselves, doubles by the kernel as DuckDB's ``to_json`` writes them (shortest round-trip digits;
tested against DuckDB), anything else (lists, structs, JSON) as DuckDB's own ``to_json`` text, so every value
reads as the SQL path writes it. Writing doubles in the kernel spares DuckDB a JSON value per double and the
kernel parsing it back to hash it.
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from stacbatch._scan import stream_hashes
from stacbatch.mapping._compile import Compiled
from stacbatch.mapping._tree import Program, leaves, program, text_sql

try:
    from stacbatch import _kernel
except ImportError:  # pragma: no cover - a build without a C compiler: the SQL path
    _kernel = None  # type: ignore[assignment]

STR32, STR64, JSON32, JSON64, I64, BOOL, TIME, F64 = range(1, 9)
_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}


def available() -> bool:
    return _kernel is not None and hasattr(_kernel, "assemble_items")


class Assembler:
    """The compiled mapping's item as the kernel's plan, with the SELECT that computes its leaves. Built over the
    batch relation ``__batch`` (registered, empty will do) to learn the leaves' types."""

    def __init__(self, con: duckdb.DuckDBPyConnection, compiled: Compiled) -> None:
        assert _kernel is not None
        tree_leaves = leaves(compiled.item)
        own = [leaf for leaf in tree_leaves if leaf.column is None]
        rel = con.sql(compiled.run_sql([leaf.sql for leaf in own])).limit(0)
        types, names = rel.types, rel.columns
        by_name = dict(zip(names, (str(t).upper() for t in types), strict=True))
        selected: list[str] = []
        #: per leaf: (kernel kind, output column)
        self.sources: list[tuple[int, str]] = []
        #: leaf number -> the output column of its canonical streams (``Leaf.canonical``)
        self.canonical = {i: leaf.canonical for i, leaf in enumerate(tree_leaves) if leaf.canonical and leaf.json}
        in_sql: set[int] = set()  # leaves whose default the SQL applies (JSON values: "null" is not a null)
        for number, leaf in enumerate(tree_leaves):
            if leaf.column is not None:
                kind = TIME if leaf.epoch else JSON32 if leaf.json else _kind(by_name[leaf.column])
                self.sources.append((kind, leaf.column))
                continue
            name = f"__leaf{len(selected)}"
            kind = JSON32 if leaf.json else _kind(by_name[name])
            sql = leaf.sql
            if leaf.default is not None and kind == JSON32:
                in_sql.add(number)
                sql = text_sql(leaf)
            elif kind == I64:
                sql = f"CAST({sql} AS BIGINT)"
            elif kind == F64:
                sql = f"CAST({sql} AS DOUBLE)"
            elif kind == JSON32 and not leaf.json:
                sql = f"CAST(to_json({sql}) AS VARCHAR)"
            selected.append(sql)
            self.sources.append((kind, name))
        self.program: Program = program(compiled.item, _kernel.canonical, in_sql)
        # a field whose value is a leaf as it is (no default) is set where that leaf is not null
        by_sql = {leaf.sql: name for leaf, (_kind, name) in zip(tree_leaves, self.sources, strict=True)}
        #: reported field -> the output column whose non-null values count its rows set
        self.set_from = {
            i: by_sql[f.value]
            for i, f in enumerate(compiled.fields)
            if f.defaulted is None and f.present == f"({f.value}) IS NOT NULL" and f.value in by_sql
        }
        self.sql = compiled.run_sql(selected, set(self.set_from))

    def assemble(self, table: pa.Table) -> tuple[pa.Array, pa.Array]:
        """(item texts, content hashes) of the rows of ``table`` (the result of ``self.sql``, filtered)."""
        assert _kernel is not None
        n = table.num_rows
        columns = [_column(kind, table.column(name)) for kind, name in self.sources]
        for i, name in self.canonical.items():
            columns[i] = (*columns[i], _canonical(table.column(name)))
        p = self.program
        offsets, text, ends, hashes = _kernel.assemble_items(p.text, p.canon, p.pool, columns, n)
        items = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text)])
        if ends is not None:  # a kernel built without xxHash: these are the canonical streams
            return items, stream_hashes(ends, hashes)
        starts = pa.py_buffer(np.arange(0, 32 * n + 1, 32, dtype=np.int32))
        return items, pa.Array.from_buffers(pa.string(), n, [None, starts, pa.py_buffer(hashes)])


def _kind(duck_type: str) -> int:
    if duck_type == "VARCHAR":
        return STR32
    if duck_type in _INTEGERS:
        return I64
    if duck_type == "BOOLEAN":
        return BOOL
    if duck_type == "DOUBLE":
        return F64
    return JSON32


def _canonical(values: pa.ChunkedArray) -> tuple[bool, int, Any, Any, Any]:
    """A column of canonical streams (binary) as the kernel reads it: (wide, offset, validity, offsets, data)."""
    arr = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        arr = arr.cast(pa.large_binary())
    bufs = arr.buffers()
    return pa.types.is_large_binary(arr.type), arr.offset, bufs[0], bufs[1], bufs[2] if bufs[2] is not None else b""


def _column(kind: int, values: pa.ChunkedArray) -> tuple[Any, ...]:
    """An output column as the kernel reads it: (kind, offset, validity, buffer, buffer)."""
    arr = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if kind in (I64, TIME, F64):
        arr = arr.cast(pa.float64() if kind == F64 else pa.int64())
        bufs = arr.buffers()
        return kind, arr.offset, bufs[0], bufs[1], None
    if kind == BOOL:
        bufs = arr.buffers()
        return BOOL, arr.offset, bufs[0], bufs[1], None
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.large_string())
    bufs = arr.buffers()  # kind is STR32 or JSON32: its 64-bit-offset twin follows it
    return kind + pa.types.is_large_string(arr.type), arr.offset, bufs[0], bufs[1], bufs[2] or b""
