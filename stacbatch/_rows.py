"""Item dicts -> Arrow record batches of the stage schema.

Per item this does only what needs Python: read the keys the query columns come from, encode WKB, serialise the
item once (compact, key order kept) and hash its canonical form. Everything else is vectorised later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import datetime as _dt
from datetime import UTC
from typing import Any

import pyarrow as pa

from stacbatch import _json
from stacbatch._geometry import GeometryError, geojson_to_wkb

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


def parse_datetime(value: Any) -> _dt.datetime | None:
    """RFC 3339 text -> aware UTC datetime for the query columns; None when absent or unreadable.

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
        return dt.replace(tzinfo=UTC)
    try:
        return dt.astimezone(UTC)
    except OverflowError:
        return None


class ItemError(ValueError):
    """An item that cannot be staged. ``field`` names the JSON path, ``hint`` what to do."""

    def __init__(self, reason: str, field: str | None = None, hint: str = "") -> None:
        super().__init__(reason)
        self.field = field
        self.hint = hint


@dataclass
class BatchBuilder:
    """Accumulates items as column lists; ``finish`` returns a record batch of ``PARSED_SCHEMA``."""

    collection: list[str] = field(default_factory=list)
    id: list[str] = field(default_factory=list)
    datetime: list[_dt.datetime | None] = field(default_factory=list)
    start_datetime: list[_dt.datetime | None] = field(default_factory=list)
    end_datetime: list[_dt.datetime | None] = field(default_factory=list)
    bbox: list[dict[str, float] | None] = field(default_factory=list)
    geometry: list[bytes | None] = field(default_factory=list)
    item: list[str] = field(default_factory=list)
    content_hash: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.id)

    def add(self, obj: Any) -> str:
        """Add one item (a parsed JSON value); return its id. Raises ``ItemError`` and adds nothing on bad input."""
        if not isinstance(obj, dict):
            raise ItemError(
                f"not a JSON object but {type(obj).__name__}",
                hint="each item must be a GeoJSON Feature object",
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
            raise ItemError(
                f"collection must be a non-empty string, got {coll!r}",
                "collection",
                "fix or remove it",
            )
        geom = obj.get("geometry")
        wkb: bytes | None = None
        bounds: list[float] | None = None
        if geom is not None:
            try:
                wkb, bounds, _ = geojson_to_wkb(geom)
            except GeometryError as err:
                raise ItemError(str(err), "geometry", "fix the geometry or set it to null") from None
            except RecursionError:
                raise ItemError("geometry is nested too deeply", "geometry", "fix the geometry") from None
        box = _bbox(obj.get("bbox"), bounds)
        props = obj.get("properties")
        if isinstance(props, dict):
            dt, start, end = (
                props.get("datetime"),
                props.get("start_datetime"),
                props.get("end_datetime"),
            )
        else:
            dt = start = end = None
        text = _json.dumps(obj).decode("utf-8")
        digest = _json.content_hash(obj)
        self.collection.append(coll)
        self.id.append(item_id)
        self.datetime.append(parse_datetime(dt))
        self.start_datetime.append(parse_datetime(start))
        self.end_datetime.append(parse_datetime(end))
        self.bbox.append(box)
        self.geometry.append(wkb)
        self.item.append(text)
        self.content_hash.append(digest)
        return item_id

    def finish(self) -> pa.RecordBatch:
        arrays = [
            pa.array(self.collection, pa.string()),
            pa.array(self.id, pa.string()),
            pa.array(self.datetime, TS),
            pa.array(self.start_datetime, TS),
            pa.array(self.end_datetime, TS),
            pa.array(self.bbox, BBOX),
            pa.array(self.geometry, pa.binary()),
            pa.ExtensionArray.from_storage(pa.json_(pa.string()), pa.array(self.item, pa.string())),
            pa.array(self.content_hash, pa.string()),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=PARSED_SCHEMA)


def _bbox(value: Any, bounds: list[float] | None) -> dict[str, float] | None:
    """The item's own bbox when it is usable (4 or 6 numbers), else the geometry's bounds."""
    if isinstance(value, list) and len(value) in (4, 6):
        try:
            if len(value) == 4:
                x0, y0, x1, y1 = (float(v) for v in value)
            else:
                x0, y0, _, x1, y1, _ = (float(v) for v in value)
        except (TypeError, ValueError):
            pass
        else:
            return {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}
    if bounds is None:
        return None
    return {"xmin": bounds[0], "ymin": bounds[1], "xmax": bounds[2], "ymax": bounds[3]}
