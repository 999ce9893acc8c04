"""GeoParquet 1.1 file metadata for stage files: WKB ``geometry`` with a ``bbox`` covering column."""

from __future__ import annotations

import math
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

_TYPE_NAMES = {
    1: "Point",
    2: "LineString",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


def geometry_types(wkb: pa.ChunkedArray | pa.Array) -> list[str]:
    """Distinct GeoParquet type names, read from the WKB headers without decoding geometries."""
    heads = pc.unique(pc.binary_slice(wkb.drop_null(), 1, 5))
    names = set()
    for h in heads.to_pylist():
        code = int.from_bytes(h, "little")
        name = _TYPE_NAMES.get(code % 1000)
        if name:
            names.add(name + (" Z" if code >= 1000 else ""))
    return sorted(names)


def bbox_of(table: pa.Table) -> list[float] | None:
    b = table["bbox"]
    vals = [
        pc.min(pc.struct_field(b, [0])).as_py(),
        pc.min(pc.struct_field(b, [1])).as_py(),
        pc.max(pc.struct_field(b, [2])).as_py(),
        pc.max(pc.struct_field(b, [3])).as_py(),
    ]
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in vals):
        return None
    return [float(v) for v in vals]


def geo_metadata(table: pa.Table) -> bytes:
    col: dict[str, Any] = {
        "encoding": "WKB",
        "geometry_types": geometry_types(table["geometry"]),
        "covering": {
            "bbox": {
                "xmin": ["bbox", "xmin"],
                "ymin": ["bbox", "ymin"],
                "xmax": ["bbox", "xmax"],
                "ymax": ["bbox", "ymax"],
            }
        },
    }
    box = bbox_of(table)
    if box is not None:
        col["bbox"] = box
    return orjson.dumps({"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": col}})
