"""Queryable columns: each item's top-level properties as typed columns of its stage file, derived from the item
text whenever a file is written (so every write path keeps them in agreement with the text, which stays the truth).

A file's property columns are named ``properties.<name>``. Which names become columns, and with which type, is the
collection's *plan* (kept in the manifest, ``collections[c]["columns"]``; merged by ``_plans.fold``)::

    {"types": {name: type}, "declared": {name: type}, "text_only": {name: reason}, "closed": bool}

A value that does not fit its column's type leaves the column NULL and is counted (the file entry's ``misses``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from stacbatch.kernel._rows import TS, parse_datetime

try:
    from stacbatch.kernel import _kernel
except ImportError:  # pragma: no cover - a build without a C compiler
    _kernel = None  # type: ignore[assignment]

PREFIX = "properties."
#: properties that are stage columns already
SKIP = frozenset({"datetime", "start_datetime", "end_datetime"})
#: column types by name (the names are what the manifest, ``info`` and declared queryables use)
TYPES: dict[str, pa.DataType] = {
    "bigint": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "timestamp": TS,
    "list<bigint>": pa.list_(pa.int64()),
    "list<double>": pa.list_(pa.float64()),
    "list<boolean>": pa.list_(pa.bool_()),
    "list<string>": pa.list_(pa.string()),
}
#: columns per collection at most, by default (the rest stays in the text; ``info`` says so)
MAX_COLUMNS = 256
#: names a plan remembers as text-only at most; beyond, the collection is "closed" (no new columns, and the view
#: reads every property of it from the text: correct, at JSON speed). 20k names cost ~0.5 MB of manifest.
MAX_TEXT_ONLY = 20_000

NULL, FALSE, TRUE, INT, FLOAT, BIGNUM, STRING, ARRAY, OBJECT = range(9)
#: the shapes of timestamp a column takes: what the kernel's parse_rfc3339 reads (the view's reading from the text
#: uses the same pattern); datetime.fromisoformat alone takes more (no seconds, +0200), which would make a
#: kernel-less build's columns differ
STAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?$"
_STAMP_RE = re.compile(STAMP)


@dataclass
class Entries:
    """Every ``properties`` member of a column of item texts, one entry each (see ``_kernel_props.h``)."""

    rows: np.ndarray  # int64
    kinds: np.ndarray  # uint8
    ints: np.ndarray  # int64
    floats: np.ndarray  # float64
    stamps: np.ndarray  # int64
    stamp_ok: np.ndarray  # bool
    keys: pa.Array  # string
    texts: pa.Array  # string


def _py_entries(texts: list[str | None], base: int, member: str = "properties") -> list[tuple[Any, ...]]:
    """The pure-Python reading (no kernel, or rows the kernel left): (row, kind, int, float, stamp, ok, key, text).
    ``member`` as the kernel's: the item member whose object's members are listed ("": the row is the object)."""
    out: list[tuple[Any, ...]] = []
    for i, text in enumerate(texts):
        try:
            doc = orjson.loads(text) if text is not None else None
        except orjson.JSONDecodeError:
            from stacbatch.engine import _json

            try:
                doc = _json.loads(text or "")  # integers beyond 64 bits
            except ValueError:
                continue
        props = doc if not member else doc.get(member) if isinstance(doc, dict) else None
        if not isinstance(props, dict):
            continue
        for key, value in props.items():
            row = base + i
            if value is None:
                out.append((row, NULL, 0, 0.0, 0, False, key, ""))
            elif value is True or value is False:
                out.append((row, TRUE if value else FALSE, 0, 0.0, 0, False, key, ""))
            elif isinstance(value, int):
                if -(2**63) <= value < 2**63:
                    out.append((row, INT, value, float(value), 0, False, key, ""))
                else:
                    out.append((row, BIGNUM, 0, float(value), 0, False, key, str(value)))
            elif isinstance(value, float):
                out.append((row, FLOAT, 0, value, 0, False, key, ""))
            elif isinstance(value, str):
                us = parse_datetime(value) if _STAMP_RE.fullmatch(value) else None  # ($ alone: a final \n too)
                out.append((row, STRING, 0, 0.0, us or 0, us is not None, key, value))
            else:
                try:
                    raw = orjson.dumps(value).decode()
                except TypeError:  # nested deeper than orjson writes (255): the standard library does
                    import json

                    raw = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
                out.append((row, ARRAY if isinstance(value, list) else OBJECT, 0, 0.0, 0, False, key, raw))
    return out


def _from_tuples(rows: list[tuple[Any, ...]]) -> Entries:
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    return Entries(
        np.asarray(cols[0], np.int64),
        np.asarray(cols[1], np.uint8),
        np.asarray(cols[2], np.int64),
        np.asarray(cols[3], np.float64),
        np.asarray(cols[4], np.int64),
        np.asarray(cols[5], np.bool_),
        pa.array(cols[6], pa.string()),
        pa.array(cols[7], pa.string()),
    )


def _strings(off: Any, data: Any) -> pa.Array:
    n = len(off) // 4 - 1
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(off), pa.py_buffer(data)])


def _kernel_entries(chunk: pa.Array, base: int, member: str) -> Entries:
    assert _kernel is not None
    bufs = chunk.buffers()
    offsets = np.frombuffer(bufs[1], np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
    rows, kinds, ints, floats, stamps, ok, key_off, keys, text_off, text, unread = _kernel.property_values(
        offsets, bufs[2] or b"", member.encode()
    )
    got = Entries(
        np.frombuffer(rows, np.int32).astype(np.int64) + base,
        np.frombuffer(kinds, np.uint8),
        np.frombuffer(ints, np.int64),
        np.frombuffer(floats, np.float64),
        np.frombuffer(stamps, np.int64),
        np.frombuffer(ok, np.uint8).astype(np.bool_),
        _strings(key_off, keys),
        _strings(text_off, text),
    )
    left = np.frombuffer(unread, np.int32)
    if not len(left):
        return got
    texts = chunk.storage if isinstance(chunk, pa.ExtensionArray) else chunk
    rest = _from_tuples(
        [t for r in left.tolist() for t in _py_entries([texts[r].as_py()], base + r, member)]  # rare: unreadable
    )
    return _concat([got, rest])


def by_name(e: Entries) -> tuple[list[str], dict[int, np.ndarray]]:
    """The entries' distinct names, and per name (by its index there) its entries' indices, rows ascending; a name
    given twice in one row keeps its last value (as JSON parsers do)."""
    encoded = pc.dictionary_encode(e.keys)
    names: list[str] = encoded.dictionary.to_pylist()
    key = np.asarray(encoded.indices.to_numpy(zero_copy_only=False))
    # few names: a narrow key makes numpy's stable sort a radix sort (2.2M entries: 0.12 s as int64, ~0.01 s)
    key = key.astype(np.uint16 if len(names) <= 0xFFFF else np.int64)
    if len(e.rows) < 2 or bool((e.rows[1:] >= e.rows[:-1]).all()):
        order = np.argsort(key, kind="stable")  # entries come in row order: a stable sort by name keeps it
    else:  # rows the kernel could not read were appended at the end
        order = np.lexsort((np.arange(len(key)), e.rows, key))
    k, r = key[order], e.rows[order]
    dup = (k[1:] == k[:-1]) & (r[1:] == r[:-1])
    if dup.any():  # a name twice in one row: keep the last
        keep = np.ones(len(order), np.bool_)
        keep[:-1] = ~dup
        order, k = order[keep], k[keep]
    bounds = np.r_[0, np.cumsum(np.bincount(k, minlength=len(names)))] if len(k) else np.zeros(1, np.int64)
    groups = {i: order[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1) if bounds[i + 1] > bounds[i]}
    return names, groups


def _concat(parts: list[Entries]) -> Entries:
    if len(parts) == 1:
        return parts[0]
    return Entries(
        np.concatenate([p.rows for p in parts]),
        np.concatenate([p.kinds for p in parts]),
        np.concatenate([p.ints for p in parts]),
        np.concatenate([p.floats for p in parts]),
        np.concatenate([p.stamps for p in parts]),
        np.concatenate([p.stamp_ok for p in parts]),
        pa.concat_arrays([p.keys for p in parts]),
        pa.concat_arrays([p.texts for p in parts]),
    )


def entries(items: pa.ChunkedArray | pa.Array, member: str = "properties") -> Entries:
    """The properties (or another member's object's members; "": each text is the object) of every item of a
    column of item texts, read once (C kernel; Python without it)."""
    if isinstance(items, pa.Array):
        items = pa.chunked_array([items], items.type)
    parts: list[Entries] = []
    base = 0
    for chunk in items.chunks:
        storage = chunk.storage if isinstance(chunk, pa.ExtensionArray) else chunk
        if _kernel is not None and hasattr(_kernel, "property_values"):
            parts.append(_kernel_entries(storage, base, member))
        else:
            parts.append(_from_tuples(_py_entries(storage.to_pylist(), base, member)))
        base += len(chunk)
    return _concat(parts) if parts else _from_tuples([])


# -- from entries to columns ------------------------------------------------------------------------------------


@dataclass
class Derived:
    """A file's property columns and what the plan learns from them."""

    columns: dict[str, pa.Array]
    #: name -> type of every column written (new ones included)
    types: dict[str, str]
    #: name -> values present but not of the column's type (the column is NULL there)
    misses: dict[str, int]
    #: names first seen here that stay in the text only, and why
    text_only: dict[str, str]
    #: name -> items with a value in the column (``info``'s fill rates, with no scan)
    filled: dict[str, int]

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"types": self.types, "filled": self.filled}
        if self.misses:
            out["misses"] = self.misses
        if self.text_only:
            out["text_only"] = self.text_only
        return out


def _infer(kinds: set[int], ok: np.ndarray, kind: np.ndarray) -> tuple[str | None, str]:
    if kinds <= {INT}:
        return "bigint", ""
    if kinds <= {INT, FLOAT, BIGNUM} and kinds & {INT, FLOAT}:
        return ("double" if kinds & {FLOAT, BIGNUM} else "bigint"), ""  # past 64 bits: the nearest double
    if kinds == {BIGNUM}:
        return None, "integers beyond 64 bits"
    if kinds <= {TRUE, FALSE}:
        return "boolean", ""
    if kinds == {STRING}:
        return ("timestamp" if bool(ok[kind == STRING].all()) else "string"), ""
    if kinds == {ARRAY}:
        return "list", ""  # the element type comes from the values (``_list``)
    if kinds == {OBJECT}:
        return "struct", ""  # flat, regular objects only: the values decide (``_structs``)
    names = {NULL: "null", FALSE: "boolean", TRUE: "boolean", INT: "number", FLOAT: "number", BIGNUM: "number"}
    seen = sorted({names.get(k, {STRING: "string", ARRAY: "array", OBJECT: "object"}.get(k, "?")) for k in kinds})
    return None, "mixed types (" + ", ".join(seen) + ")"


def _scatter(n: int, rows: np.ndarray, values: np.ndarray, dtype: pa.DataType) -> pa.Array:
    """A column of ``n`` rows holding ``values`` at ``rows`` and NULL elsewhere."""
    data = np.zeros(n, values.dtype)
    data[rows] = values
    valid = np.zeros(n, np.bool_)
    valid[rows] = True
    return pa.array(data, type=dtype, mask=~valid)


def _take(n: int, rows: np.ndarray, source: pa.Array, picks: np.ndarray) -> pa.Array:
    """A column of ``n`` rows holding ``source[picks[i]]`` at ``rows[i]`` and NULL elsewhere."""
    where = np.full(n, -1, np.int64)
    where[rows] = picks
    index = pa.array(where, mask=where < 0)
    return pc.take(source, index)


_LIST_OF = {
    pa.int64(): "list<bigint>",
    pa.float64(): "list<double>",
    pa.bool_(): "list<boolean>",
    pa.string(): "list<string>",
}


def _list_values(texts: pa.Array) -> tuple[pa.Array | None, str | None]:
    """Array texts as one list column when they are regular (one scalar element type), else (None, None); an
    all-empty set gives (values, None). pyarrow's JSON reader infers the element type for the whole set at once."""
    import pyarrow.json as pj

    lines = pc.binary_join_element_wise('{"v":', texts, "}\n", "")
    offsets = np.frombuffer(lines.buffers()[1], np.int32)[lines.offset : lines.offset + len(lines) + 1]
    body = lines.buffers()[2][int(offsets[0]) : int(offsets[-1])]
    try:
        read = pj.read_json(pa.BufferReader(body))["v"]
        if pa.types.is_list(read.type) and read.type.value_type == pa.null():
            # pyarrow 26 builds list<null> arrays whose offsets overrun their values ([null, null]): rebuilt here
            lists = [orjson.loads(t) for t in texts.to_pylist()]
            return pa.array(lists, pa.list_(pa.null())), None
        got = read.combine_chunks()
    except pa.ArrowIndexError:  # the same pyarrow fault, in a chunk of a larger set ([null] beside [1])
        return _list_values_py(texts)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None, None
    if not pa.types.is_list(got.type) or len(got) != len(texts):
        return None, None
    if got.type.value_type == pa.null():
        return got, None
    name = _LIST_OF.get(got.type.value_type)
    return (got, name) if name is not None else (None, None)


def _list_values_py(texts: pa.Array) -> tuple[pa.Array | None, str | None]:
    """``_list_values`` by orjson, value by value (the rare sets pyarrow's reader gets wrong)."""
    lists = [orjson.loads(t) for t in texts.to_pylist()]
    kinds = {bool if isinstance(v, bool) else type(v) for values in lists for v in values if v is not None}
    if not kinds:
        return pa.array(lists, pa.list_(pa.null())), None
    name = {
        frozenset({int}): "list<bigint>",
        frozenset({int, float}): "list<double>",
        frozenset({float}): "list<double>",
        frozenset({bool}): "list<boolean>",
        frozenset({str}): "list<string>",
    }.get(frozenset(kinds))
    if name is None:
        return None, None
    try:
        return pa.array(lists, TYPES[name]), name
    except (OverflowError, pa.ArrowInvalid):  # integers past 64 bits
        return None, None


_ELEMENT: dict[str, tuple[type, ...]] = {
    "list<bigint>": (int,),
    "list<double>": (int, float),
    "list<boolean>": (bool,),
    "list<string>": (str,),
}


def _list_fitting(texts: pa.Array, target: str) -> tuple[pa.Array, np.ndarray]:
    """Values of a known list type one by one (only when the set is not regular as a whole): the column and a
    mask of the values that fit."""
    want = _ELEMENT[target]
    out: list[Any] = []
    fits = np.zeros(len(texts), np.bool_)
    for i, text in enumerate(texts.to_pylist()):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        ok = isinstance(value, list) and all(
            v is None or (isinstance(v, want) and (bool in want or not isinstance(v, bool))) for v in value
        )
        ok = ok and not (
            target == "list<bigint>" and any(isinstance(v, int) and not -(2**63) <= v < 2**63 for v in value)
        )
        if ok and target == "list<double>":
            value = [None if v is None else float(v) for v in value]  # integers past 64 bits too
        out.append(value if ok else None)
        fits[i] = ok
    return pa.array(out, TYPES[target]), fits


def derive(items: pa.ChunkedArray, plan: dict[str, Any] | None, max_columns: int = MAX_COLUMNS) -> Derived:
    """The property columns of a file's rows under its collection's ``plan`` (None: a collection seen first)."""
    plan = plan or {}
    n = len(items)
    out = Derived({}, {}, {}, {}, {})
    e = entries(items)
    if not len(e.rows):
        return out
    names, groups = by_name(e)

    types: dict[str, str] = plan.get("types") or {}
    declared: dict[str, str] = plan.get("declared") or {}
    text_only: dict[str, str] = plan.get("text_only") or {}
    closed = bool(plan.get("closed"))
    lowered = {name.lower(): name for name in (*types, *declared)}
    known = [(i, names[i]) for i in groups if names[i] in types or names[i] in declared]
    # New names by how many items carry them, so that a column cap keeps the most used ones.
    new = sorted(
        ((i, names[i]) for i in groups if names[i] not in types and names[i] not in declared),
        key=lambda t: (-len(groups[t[0]]), t[1]),
    )
    room = max_columns - len(set(types) | set(declared))
    for i, name in [*known, *new]:
        if name in SKIP or name in text_only:
            continue
        sel = groups[i]
        kind = e.kinds[sel]
        kinds = set(np.unique(kind).tolist()) - {NULL}
        target = declared.get(name) or types.get(name)
        if target is None:
            if closed:
                continue
            other = lowered.get(name.lower())
            if other is not None and other != name:
                out.text_only[name] = f"same name as {other!r} but for case"
                continue
            if not kinds:
                continue  # only nulls so far: not a column yet, and nothing the text would contradict later
            target, why = _infer(kinds, e.stamp_ok[sel], kind)
            if target is None:
                out.text_only[name] = why
                continue
            if room <= 0:
                out.text_only[name] = f"over the column cap ({max_columns})"
                continue
            room -= 1
            lowered[name.lower()] = name
        elif target == "bigint" and name not in declared and kinds & {FLOAT, BIGNUM}:
            target = "double"  # widened: older files' BIGINT reads as DOUBLE (the view casts)
        made = _column(n, e, sel, kind, target, name in declared or name in types, name in declared)
        if isinstance(made, str):
            out.text_only[name] = made
            continue
        column, typename, misses = made
        out.columns[name] = column
        out.types[name] = typename
        out.filled[name] = len(column) - column.null_count
        if misses:
            out.misses[name] = misses
    return out


def _column(
    n: int, e: Entries, sel: np.ndarray, kind: np.ndarray, target: str, fixed: bool, declared: bool
) -> tuple[pa.Array, str, int] | str:
    """The column of one name, its type and the values that did not fit; or why a new name gets no column."""
    rows = e.rows[sel]
    present = int((kind != NULL).sum())
    if target == "bigint":
        fit = kind == INT
        col = _scatter(n, rows[fit], e.ints[sel][fit], pa.int64())
    elif target == "double":
        fit = (
            (kind == INT) | (kind == FLOAT) | (kind == BIGNUM)
        )  # beyond 64 bits: the nearest double, as DuckDB reads it
        col = _scatter(n, rows[fit], e.floats[sel][fit], pa.float64())
    elif target == "boolean":
        fit = (kind == TRUE) | (kind == FALSE)
        col = _scatter(n, rows[fit], kind[fit] == TRUE, pa.bool_())
    elif target == "timestamp":
        fit = (kind == STRING) & e.stamp_ok[sel]
        col = _scatter(n, rows[fit], e.stamps[sel][fit], TS)
    elif target == "string":
        fit = kind == STRING
        col = _take(n, rows[fit], e.texts, sel[fit])
    elif target == "struct" or target.startswith("struct{"):
        from stacbatch.stage._structs import struct_values

        fit = kind == OBJECT
        got = struct_values(e.texts.take(pa.array(sel[fit])), None if target == "struct" else target, declared)
        if isinstance(got, str):
            return got
        values, target, ok = got
        fit = fit.copy()
        fit[np.flatnonzero(fit)[~ok]] = False
        values = values.filter(pa.array(ok))
        col = _take(n, rows[fit], values, np.arange(len(values)))
    else:  # lists
        fit = kind == ARRAY
        texts = e.texts.take(pa.array(sel[fit]))
        values, name = _list_values(texts)
        if target == "list":  # a new name: the values decide the element type
            if values is None or name is None:
                return "lists of mixed types or of lists/objects"
            target = name
        elif values is not None and (
            name is None or name == target or (name, target) == ("list<bigint>", "list<double>")
        ):
            values = values.cast(TYPES[target])
        elif values is not None and not fixed and (name, target) == ("list<double>", "list<bigint>"):
            target, values = "list<double>", values.cast(TYPES["list<double>"])
        else:
            values, ok = _list_fitting(texts, target)
            fit = fit.copy()
            fit[np.flatnonzero(fit)[~ok]] = False
            values = values.filter(pa.array(ok))
        col = _take(n, rows[fit], values, np.arange(len(values)))
    return col, target, present - int(fit.sum())
