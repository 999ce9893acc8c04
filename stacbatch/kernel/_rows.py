"""Item dicts -> Arrow record batches of the stage schema.

Per item this does only what needs Python: read the keys the query columns come from, encode WKB, serialise the
item once (compact, key order kept) and hash its canonical form. Everything else is vectorised later.
"""

from __future__ import annotations

import datetime as _dt
from datetime import UTC
from typing import Any

import pyarrow as pa

from stacbatch.engine import _json
from stacbatch.kernel import _canonical
from stacbatch.kernel._geometry import GeometryError, geojson_to_wkb

#: Collection key for items that have no ``collection`` (or ``"collection": null``). Emit gives them back as they
#: came, without one: the key lives only in the stage's ``collection`` column and partition path.
DEFAULT_COLLECTION = "_no_collection"

TS = pa.timestamp("us", tz="UTC")
BBOX = pa.struct([("xmin", pa.float64()), ("ymin", pa.float64()), ("xmax", pa.float64()), ("ymax", pa.float64())])

#: Columns a parser produces; the loader appends ``stage_run`` and ``stage_seq``.
PARSED_SCHEMA = pa.schema(
    [
        pa.field("collection", pa.string(), nullable=False),
        pa.field("id", pa.string(), nullable=False),
        pa.field("datetime", TS),
        pa.field("start_datetime", TS),
        pa.field("end_datetime", TS),
        pa.field("bbox", BBOX),
        pa.field("geometry", pa.binary()),
        pa.field("item", pa.json_(pa.string()), nullable=False),
        pa.field("content_hash", pa.string(), nullable=False),
    ]
)
STAGE_SCHEMA = PARSED_SCHEMA.append(pa.field("stage_run", pa.string(), nullable=False)).append(
    pa.field("stage_seq", pa.int64(), nullable=False)
)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=UTC)
_US = _dt.timedelta(microseconds=1)


def parse_datetime(value: Any) -> int | None:
    """RFC 3339 text -> microseconds since the epoch (UTC) for the query columns; None when absent or unreadable.

    Lenient on purpose (lowercase t/z, naive = UTC, date only): load does not validate, it indexes.
    """
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        dt = _dt.datetime.fromisoformat(value)
    except ValueError:
        try:
            dt = _dt.datetime.fromisoformat(value.upper())
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        return (dt - _EPOCH) // _US
    except OverflowError:
        return None


class ItemError(ValueError):
    """An item that cannot be staged. ``field`` names the JSON path, ``hint`` what to do."""

    def __init__(self, reason: str, field: str | None = None, hint: str = "") -> None:
        super().__init__(reason)
        self.field = field
        self.hint = hint


class BatchBuilder:
    """Accumulates items as row tuples (one append per item); ``finish`` transposes them into a record batch."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, obj: Any, raw: bytes | None = None) -> str:
        """Add one item (a parsed JSON value); return its id. Raises ``ItemError`` and adds nothing on bad input.

        ``raw`` is the item's own JSON text when it came as one NDJSON line: stored as is (byte-exact, and no
        re-serialisation cost). orjson has already checked it is valid UTF-8 JSON.
        """
        if not isinstance(obj, dict):
            raise ItemError(
                f"not a JSON object but {type(obj).__name__}", hint="each item must be a GeoJSON Feature object"
            )
        item_id = obj.get("id")
        if not isinstance(item_id, str) or not item_id:
            if item_id is None:
                raise ItemError("item has no id", "id", "give every item a non-empty string id")
            raise ItemError(f"id must be a non-empty string, got {item_id!r}", "id", "make the id a string")
        coll = obj.get("collection")
        if coll is None:
            coll = DEFAULT_COLLECTION
        elif not isinstance(coll, str) or not coll:
            raise ItemError(f"collection must be a non-empty string, got {coll!r}", "collection", "fix or remove it")
        elif coll == DEFAULT_COLLECTION:  # its partition holds the items that have no collection: keys would collide
            raise ItemError(
                f"collection {coll!r} is reserved for items without a collection",
                "collection",
                "rename the collection, or remove the field if the item has none",
            )
        box = _own_bbox(obj.get("bbox"))
        geom = obj.get("geometry")
        wkb: bytes | None = None
        if geom is not None:
            try:
                wkb, bounds = geojson_to_wkb(geom, need_bounds=box is None)
            except GeometryError as err:
                raise ItemError(str(err), "geometry", "fix the geometry or set it to null") from None
            except RecursionError:
                raise ItemError("geometry is nested too deeply", "geometry", "fix the geometry") from None
            if box is None and bounds is not None:
                box = (bounds[0], bounds[1], bounds[2], bounds[3])
        props = obj.get("properties")
        if isinstance(props, dict):
            dt, start, end = props.get("datetime"), props.get("start_datetime"), props.get("end_datetime")
        else:
            dt = start = end = None
        corners: tuple[float | None, ...] = _NO_BOX if box is None else box
        # The hash is taken of the stored text, whichever path made it (the kernel hashes raw lines).
        if raw is not None:
            text = raw if raw[-1] > 32 else raw.rstrip()
        else:
            try:
                text = _json.dumps(obj)
            except _json.NonFiniteError as err:
                raise ItemError(_json.NON_FINITE, err.path, "STAC is JSON: write null or a finite number") from None
        self.rows.append(
            (
                coll,
                item_id,
                parse_datetime(dt),
                parse_datetime(start),
                parse_datetime(end),
                *corners,
                wkb,
                text,
                _canonical.content_hash_text(text),
            )
        )
        return item_id

    def finish(self) -> pa.RecordBatch:
        (coll, ids, dt, start, end, xmin, ymin, xmax, ymax, geom, item, digest) = zip(*self.rows, strict=True)
        f64 = pa.float64()
        xmin_a = pa.array(xmin, f64)
        bbox = pa.StructArray.from_arrays(
            [xmin_a, pa.array(ymin, f64), pa.array(xmax, f64), pa.array(ymax, f64)],
            fields=list(BBOX),
            mask=xmin_a.is_null(),
        )
        # The item texts are valid UTF-8 already (orjson checked on parse, or produced them): no second check.
        item_a = pa.array(item, pa.binary()).view(pa.string())
        arrays = [
            pa.array(coll, pa.string()),
            pa.array(ids, pa.string()),
            pa.array(dt, pa.int64()).view(TS),
            pa.array(start, pa.int64()).view(TS),
            pa.array(end, pa.int64()).view(TS),
            bbox,
            pa.array(geom, pa.binary()),
            pa.ExtensionArray.from_storage(pa.json_(pa.string()), item_a),
            pa.array(digest, pa.string()),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=PARSED_SCHEMA)


_NO_BOX: tuple[None, ...] = (None, None, None, None)


_NUMBER = (int, float)


def _own_bbox(value: Any) -> tuple[float, float, float, float] | None:
    """The item's own bbox when it is usable (4 or 6 numbers; Arrow converts ints to doubles)."""
    if type(value) is not list:
        return None
    if len(value) == 4:
        x0, y0, x1, y1 = value
    elif len(value) == 6:
        x0, y0, _, x1, y1, _ = value
    else:
        return None
    if type(x0) in _NUMBER and type(y0) in _NUMBER and type(x1) in _NUMBER and type(y1) in _NUMBER:
        return (x0, y0, x1, y1)
    return None
