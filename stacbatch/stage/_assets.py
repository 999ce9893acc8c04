"""The asset fields column: per item, the href, type and roles of each asset, derived from the item text with the
property columns (``_files.write_stage_file``), so that filters on assets run at Parquet speed.

One column, ``asset_fields STRUCT(href MAP(VARCHAR, VARCHAR), type MAP(VARCHAR, VARCHAR), roles MAP(VARCHAR,
VARCHAR[]))``: three maps keyed by asset key, all with the same keys. Not a column per asset key: keys vary by
collection (``B04``, ``red``, ``visual``) and CMR-STAC names assets after each granule's files, so per-key
columns would be thousands of mostly empty ones and a different schema per file. Maps have one type for every file
of every collection. Three maps in a struct, not one map of structs: DuckDB reads only the struct fields a query
names, and a map's values are read whole, so ``asset_fields.type['B04']`` reads the keys and types (dictionary
encoded, small) and not the hrefs, which are most of the bytes: 3x faster. Why these fields: they are what people
select assets by (is there a COG, where is it, which one is the data); the rest stays in the text (``assets``).

Defined exactly (the view's reading of files written without the column is the same definition, in SQL):

* an entry per member of the item's ``assets`` object whose value is an object (duplicate keys: the last);
* ``href`` / ``type``: the member's value when it is a string, else NULL; ``roles``: the value when it is an array
  of strings (NULL elements kept), else NULL. A value of another JSON type is counted as a miss;
* an item whose ``assets`` is absent, not an object, or holds no object: empty maps (never NULL).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stacbatch.stage._columns import ARRAY, OBJECT, STRING, _list_fitting, _list_values, entries

try:
    from stacbatch.kernel import _kernel
except ImportError:  # pragma: no cover - a build without a C compiler
    _kernel = None  # type: ignore[assignment]

#: the column's name, in the files and in the ``items`` view
COLUMN = "asset_fields"
FIELDS = ("href", "type", "roles")
VALUES = {"href": pa.string(), "type": pa.string(), "roles": pa.list_(pa.string())}
TYPE = pa.struct([(name, pa.map_(pa.string(), t)) for name, t in VALUES.items()])
SQL_TYPE = 'STRUCT(href MAP(VARCHAR, VARCHAR), "type" MAP(VARCHAR, VARCHAR), roles MAP(VARCHAR, VARCHAR[]))'


def _column(n: int, rows: np.ndarray, keys: pa.Array, values: list[pa.Array]) -> pa.Array:
    """The column for ``n`` items from their assets (``rows`` ascending, keys unique per row) and field values."""
    counts = np.bincount(rows, minlength=n) if len(rows) else np.zeros(n, np.int64)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    at = pa.array(offsets)
    maps = [pa.MapArray.from_arrays(at, keys, v, type=TYPE.field(i).type) for i, v in enumerate(values)]
    return pa.StructArray.from_arrays(maps, fields=list(TYPE))


def _items(rows: np.ndarray) -> int:
    return len(np.unique(rows))


def _last(rows: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Indices of the entries that count (the last of each (row, key)), in entry order."""
    if not len(rows):
        return np.zeros(0, np.int64)
    order = np.lexsort((np.arange(len(rows)), keys, rows))
    r, k = rows[order], keys[order]
    last = np.ones(len(order), np.bool_)
    last[:-1] = (r[1:] != r[:-1]) | (k[1:] != k[:-1])
    return np.sort(order[last])


def _codes(keys: pa.Array) -> np.ndarray:
    encoded = pc.dictionary_encode(keys)
    codes: np.ndarray = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return codes


def asset_fields(items: pa.ChunkedArray) -> tuple[pa.Array, dict[str, Any]]:
    """The column for a file's item texts, and its report for the file's manifest entry: ``items`` with at least
    one asset and ``misses`` per field (values of another JSON type)."""
    parts = []
    for chunk in items.chunks:
        storage = chunk.storage if isinstance(chunk, pa.ExtensionArray) else chunk
        got = _kernel_fields(storage) if _kernel is not None and hasattr(_kernel, "asset_fields") else None
        parts.append(got if got is not None else _entries_fields(pa.chunked_array([storage], storage.type)))
    if len(parts) == 1:
        return parts[0]
    report: dict[str, Any] = {"items": sum(r["items"] for _, r in parts)}
    misses: dict[str, int] = {}
    for _, r in parts:
        for k, v in (r.get("misses") or {}).items():
            misses[k] = misses.get(k, 0) + v
    if misses:
        report["misses"] = misses
    return pa.concat_arrays([c for c, _ in parts]) if parts else pa.array([], TYPE), report


def _bits(ok: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(ok.view(np.bool_), bitorder="little"))


def _texts(off: Any, data: Any, ok: np.ndarray | None = None) -> pa.Array:
    n = len(off) // 4 - 1
    valid = None if ok is None or ok.all() else _bits(ok)
    return pa.Array.from_buffers(pa.string(), n, [valid, pa.py_buffer(off), pa.py_buffer(data)])


def _kernel_fields(chunk: pa.Array) -> tuple[pa.Array, dict[str, Any]] | None:
    """The column by the kernel's one pass (``_kernel_assets.h``); None when it left a row to Python."""
    assert _kernel is not None
    bufs = chunk.buffers()
    offsets = np.frombuffer(bufs[1], np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
    got = _kernel.asset_fields(offsets, bufs[2] or b"")
    if len(got[16]):  # unread rows (not JSON orjson reads, or nested past the kernel's limit): rare
        return None
    n = len(chunk)
    rows = np.frombuffer(got[0], np.int32)
    keys = _texts(got[1], got[2])
    obj = np.frombuffer(got[3], np.uint8).astype(np.bool_)
    miss = np.frombuffer(got[4], np.uint8)
    href = _texts(got[5], got[6], np.frombuffer(got[7], np.uint8))
    typ = _texts(got[8], got[9], np.frombuffer(got[10], np.uint8))
    roles_ok = np.frombuffer(got[11], np.uint8).astype(np.bool_)
    elements = _texts(got[13], got[14], np.frombuffer(got[15], np.uint8))
    roles = pa.ListArray.from_arrays(
        pa.array(np.frombuffer(got[12], np.int32)), elements, mask=pa.array(~roles_ok) if not roles_ok.all() else None
    )
    values = [href, typ, roles]
    keep = obj
    if len(rows) > 1:  # a key given twice in one item: the last counts
        encoded = pc.dictionary_encode(keys)
        codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        pairs = np.sort(rows.astype(np.int64) * len(encoded.dictionary) + codes)
        if (pairs[1:] == pairs[:-1]).any():
            last = np.zeros(len(rows), np.bool_)
            last[_last(rows.astype(np.int64), codes)] = True
            keep = obj & last
    if not keep.all():
        mask = pa.array(keep)
        rows, miss = rows[keep], miss[keep]
        keys, values = keys.filter(mask), [v.filter(mask) for v in values]
    column = _column(n, rows, keys, values)
    report: dict[str, Any] = {"items": _items(rows)}
    misses = {name: int(((miss & bit) > 0).sum()) for name, bit in (("href", 1), ("type", 2), ("roles", 4))}
    if any(misses.values()):
        report["misses"] = {k: v for k, v in misses.items() if v}
    return column, report


def _entries_fields(items: pa.ChunkedArray) -> tuple[pa.Array, dict[str, Any]]:
    """The column from ``entries`` (the Python path, or the kernel's generic reader): every asset's object text,
    then its members."""
    n = len(items)
    top = entries(items, "assets")
    keep = _last(top.rows, _codes(top.keys))
    keep = keep[top.kinds[keep] == OBJECT]
    keep = keep[np.argsort(top.rows[keep], kind="stable")]  # rows the kernel left to Python come last
    rows = top.rows[keep]
    keys = top.keys.take(pa.array(keep))
    texts = top.texts.take(pa.array(keep))
    m = len(keep)
    fields = entries(texts, "")
    wanted = pc.fill_null(pc.index_in(fields.keys, pa.array(FIELDS)), -1).to_numpy(zero_copy_only=False)
    chosen = np.flatnonzero(wanted >= 0)
    chosen = chosen[_last(fields.rows[chosen], wanted[chosen])]
    misses: dict[str, int] = {}
    columns: list[pa.Array] = []
    for f, name in enumerate(FIELDS):
        sel = chosen[wanted[chosen] == f]
        kind = fields.kinds[sel]
        where = np.full(m, -1, np.int64)
        if name == "roles":
            ok = kind == ARRAY
            lists = fields.texts.take(pa.array(sel[ok]))
            values, typ = _list_values(lists)
            if values is not None and typ in (None, "list<string>"):
                values = values.cast(pa.list_(pa.string()))
            else:
                values, fits = _list_fitting(lists, "list<string>")
                ok = ok.copy()
                ok[np.flatnonzero(ok)[~fits]] = False
                values = values.filter(pa.array(fits))
            source = values
            where[fields.rows[sel[ok]]] = np.arange(len(values))
        else:
            ok = kind == STRING
            source = fields.texts
            where[fields.rows[sel[ok]]] = sel[ok]
        present = int((kind != 0).sum())  # JSON null is no miss
        if present - int(ok.sum()):
            misses[name] = present - int(ok.sum())
        columns.append(pc.take(source, pa.array(where, mask=where < 0)))
    column = _column(n, rows, keys, columns)
    report: dict[str, Any] = {"items": _items(rows)}
    if misses:
        report["misses"] = misses
    return column, report


def from_text() -> str:
    """The column read from the item text (files written before it existed), as ``asset_fields`` defines it."""
    # a JSON pointer, not `-> k`: a key becomes a JSONPath there, which some keys (a backslash) break
    asset = "item -> ('/assets/' || replace(replace(k, '~', '~0'), '/', '~1'))"

    def text(field: str) -> str:
        return (
            f"CASE WHEN json_type({asset}, '$.{field}') = 'VARCHAR' THEN json_extract_string({asset}, '$.{field}') END"
        )

    roles = (
        f"CASE WHEN json_type({asset}, '$.roles') = 'ARRAY' AND coalesce(list_bool_and(list_transform("
        f"CAST(json_extract({asset}, '$.roles') AS JSON[]), lambda x: x IS NULL OR json_type(x) = 'VARCHAR')), true) "
        f"THEN CAST(json_extract({asset}, '$.roles') AS VARCHAR[]) END"
    )
    # each key once, in document order (a map's keys are unique), then the objects among them
    names = "json_keys(item, '$.assets')"
    once = f"list_filter({names}, lambda k, i: list_position({names}, k) = i)"
    keys = f"list_filter({once}, lambda k: json_type({asset}) = 'OBJECT')"
    maps = {
        name: f"map_from_entries(list_transform(coalesce({keys}, []), lambda k: {{'key': k, 'value': {value}}}))"
        for name, value in (("href", text("href")), ("type", text("type")), ("roles", roles))
    }
    return f"CAST({{'href': {maps['href']}, 'type': {maps['type']}, 'roles': {maps['roles']}}} AS {SQL_TYPE})"
