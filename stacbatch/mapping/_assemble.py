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

from stacbatch.kernel._scan import stream_hashes
from stacbatch.mapping._compile import Compiled
from stacbatch.mapping._tree import Program, leaves, program, text_sql

try:
    from stacbatch.kernel import _kernel
except ImportError:  # pragma: no cover - a build without a C compiler: the SQL path
    _kernel = None  # type: ignore[assignment]

STR32, STR64, JSON32, JSON64, I64, BOOL, TIME, F64 = range(1, 9)
_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}


def available() -> bool:
    return _kernel is not None and hasattr(_kernel, "assemble_items")


#: where the kernel reads a leaf's column: the SELECT's output, the batch of records itself, or nowhere (a template)
OUT, BATCH, NONE = "out", "batch", "none"


class Assembler:
    """The compiled mapping's item as the kernel's plan, with the SELECT that computes its leaves. Built over the
    batch relation ``__batch`` (registered, empty will do) to learn the leaves' types; ``columns``: the source's
    columns and their DuckDB types (leaves that are such a column as it is, and templates of text and integer
    columns, are read from the batch, not computed by the SELECT)."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, compiled: Compiled, columns: dict[str, str] | None = None
    ) -> None:
        assert _kernel is not None
        tree_leaves = leaves(compiled.item)
        types = {k: str(v).upper() for k, v in (columns or {}).items()}
        from_batch = {
            i: kind
            for i, leaf in enumerate(tree_leaves)
            if leaf.source is not None and (kind := _batch_kind(types.get(leaf.source, ""))) is not None
        }
        templated = {
            i: leaf.pieces
            for i, leaf in enumerate(tree_leaves)
            if leaf.pieces is not None
            and all(c is None or _batch_kind(types.get(c, "")) in (STR32, I64) for c, _t in leaf.pieces)
        }
        split = {i: leaf.split for i, leaf in enumerate(tree_leaves) if leaf.split is not None}
        own = [
            leaf
            for i, leaf in enumerate(tree_leaves)
            if leaf.column is None and i not in from_batch and i not in templated and i not in split
        ]
        rel = con.sql(compiled.run_sql([leaf.sql for leaf in own])).limit(0)
        by_name = dict(zip(rel.columns, (str(t).upper() for t in rel.types), strict=True))
        selected: list[str] = []
        #: per kernel column (leaf i is column i; template pieces' columns follow): (kind, where, column)
        self.sources: list[tuple[int, str, str]] = []
        #: leaf number -> the output column of its canonical streams (``Leaf.canonical``)
        self.canonical = {i: leaf.canonical for i, leaf in enumerate(tree_leaves) if leaf.canonical and leaf.json}
        in_sql: set[int] = set()  # leaves whose default the SQL applies (JSON values: "null" is not a null)
        for number, leaf in enumerate(tree_leaves):
            if number in from_batch:
                self.sources.append((from_batch[number], BATCH, str(leaf.source)))
                continue
            if number in templated:
                self.sources.append((0, NONE, ""))
                continue
            if number in split:
                self.sources.append((STR32, BATCH, split[number][0]))
                continue
            if leaf.column is not None:
                kind = TIME if leaf.epoch else JSON32 if leaf.json else _kind(by_name[leaf.column])
                self.sources.append((kind, OUT, leaf.column))
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
            self.sources.append((kind, OUT, name))
        pieces: dict[int, list[tuple[int, str]]] = {}
        piece_column: dict[str, int] = {}
        for number, parts in templated.items():
            pieces[number] = []
            for col, text in parts:
                if col is not None and col not in piece_column:
                    piece_column[col] = len(self.sources)
                    self.sources.append((_batch_kind(types[col]) or STR32, BATCH, col))
                pieces[number].append((-1, text) if col is None else (piece_column[col], ""))
        separators = {n: sep for n, (_col, sep) in split.items()}
        self.program: Program = program(compiled.item, _kernel.canonical, in_sql, pieces, separators)
        # a field whose value is a leaf as it is (no default) is set where that leaf is not null; a template where
        # none of its columns is
        by_sql: dict[str, tuple[str, tuple[str, ...]]] = {}
        for number, leaf in enumerate(tree_leaves):
            _k, where, name = self.sources[number]
            if number in templated:
                by_sql[leaf.sql] = (BATCH, tuple(dict.fromkeys(c for c, _t in templated[number] if c is not None)))
            else:
                by_sql[leaf.sql] = (where, (name,))
        #: reported field -> (where, columns): its rows set are those where none of these columns is null
        self.set_from = {
            i: by_sql[f.value]
            for i, f in enumerate(compiled.fields)
            if f.defaulted is None and f.present == f"({f.value}) IS NOT NULL" and f.value in by_sql
        }
        self.sql = compiled.run_sql(selected, set(self.set_from))

    def assemble(self, table: pa.Table, batch: pa.Table | None = None, rows: Any = None) -> tuple[pa.Array, pa.Array]:
        """(item texts, content hashes) of the rows of ``table`` (the result of ``self.sql``, filtered); ``batch``:
        the records it was computed from, ``rows``: the positions there of ``table``'s rows (None: all, in order)."""
        assert _kernel is not None
        n = table.num_rows
        columns: list[tuple[Any, ...] | None] = []
        positions = None if rows is None else pa.array(rows)
        for kind, where, name in self.sources:
            if where == NONE:
                columns.append(None)
                continue
            if where == OUT:
                values = table.column(name)
            else:
                assert batch is not None, "leaves read from the batch need it"
                values = batch.column(name) if positions is None else batch.column(name).take(positions)
            columns.append(_column(kind, values))
        for i, name in self.canonical.items():
            columns[i] = (*(columns[i] or ()), _canonical(table.column(name)))
        p = self.program
        args: tuple[Any, ...] = (p.text, p.canon, p.pool, columns, n)
        if len(p.pieces):
            args += (p.pieces,)
        offsets, text, ends, hashes = _kernel.assemble_items(*args)
        items = pa.Array.from_buffers(pa.large_string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text)])
        if ends is not None:  # a kernel built without xxHash: these are the canonical streams
            return items, stream_hashes(ends, hashes)
        starts = pa.py_buffer(np.arange(0, 32 * n + 1, 32, dtype=np.int32))
        return items, pa.Array.from_buffers(pa.string(), n, [None, starts, pa.py_buffer(hashes)])


def _batch_kind(duck_type: str) -> int | None:
    """The kernel kind of a source column read from the batch as it is (None: left to the SELECT)."""
    kind = _kind(duck_type)
    return None if kind == JSON32 else kind


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
