"""GeoJSON geometry -> ISO WKB and a 2D bounding box, in pure Python with ``struct``.

The stage keeps the item's geometry verbatim in its JSON; WKB is only the query/index column. So open rings are
closed in the WKB (readers reject open rings) while the JSON keeps them open, and Z is written when present.
"""

from __future__ import annotations

import math
import struct
from itertools import chain
from typing import Any

_CODES = {
    "Point": 1,
    "LineString": 2,
    "Polygon": 3,
    "MultiPoint": 4,
    "MultiLineString": 5,
    "MultiPolygon": 6,
    "GeometryCollection": 7,
}
_HEADER = struct.Struct("<BI")
_COUNT = struct.Struct("<I")


class GeometryError(ValueError):
    """The geometry cannot be read; the message names the offending part."""


Bounds = list[float]  # [xmin, ymin, xmax, ymax], updated in place


def _flat(positions: Any, dim: int, close: bool, bounds: Bounds | None, where: str) -> bytes:
    if not isinstance(positions, list):
        raise GeometryError(f"{where}: expected an array of positions")
    n = len(positions)
    try:
        if set(map(len, positions)) == {dim}:
            # Fast path (C-level flattening); struct.pack below rejects non-numbers.
            vals = list(chain.from_iterable(positions))
        elif dim == 2:
            vals = [c for p in positions for c in (p[0], p[1])]
        else:
            vals = [c for p in positions for c in (p[0], p[1], p[2] if len(p) > 2 else math.nan)]
    except (TypeError, IndexError, KeyError):
        raise GeometryError(f"{where}: every position must be an array of 2 or 3 numbers") from None
    if close and n > 0 and vals[:dim] != vals[-dim:]:
        vals.extend(vals[:dim])
        n += 1
    try:
        packed = struct.pack(f"<I{len(vals)}d", n, *vals)
    except (struct.error, TypeError):
        raise GeometryError(f"{where}: every position must be an array of 2 or 3 numbers") from None
    if n and bounds is not None:
        xs = vals[0::dim]
        ys = vals[1::dim]
        lo_x, hi_x, lo_y, hi_y = min(xs), max(xs), min(ys), max(ys)
        if lo_x < bounds[0]:
            bounds[0] = lo_x
        if lo_y < bounds[1]:
            bounds[1] = lo_y
        if hi_x > bounds[2]:
            bounds[2] = hi_x
        if hi_y > bounds[3]:
            bounds[3] = hi_y
    return packed


def _rings(rings: Any, dim: int, bounds: Bounds | None, where: str) -> bytes:
    if not isinstance(rings, list):
        raise GeometryError(f"{where}: expected an array of linear rings")
    parts = [_COUNT.pack(len(rings))]
    for i, ring in enumerate(rings):
        parts.append(_flat(ring, dim, True, bounds, f"{where}[{i}]"))
    return b"".join(parts)


def _dim_of(coords: Any, depth: int) -> int:
    for _ in range(depth):
        if not isinstance(coords, list) or not coords:
            return 2
        coords = coords[0]
    return 3 if isinstance(coords, list) and len(coords) > 2 else 2


_DEPTH = {
    "Point": 0,
    "LineString": 1,
    "MultiPoint": 1,
    "Polygon": 2,
    "MultiLineString": 2,
    "MultiPolygon": 3,
}


def _encode(geom: Any, bounds: Bounds | None, where: str) -> bytes:
    if not isinstance(geom, dict):
        raise GeometryError(f"{where}: expected a GeoJSON geometry object")
    kind = geom.get("type")
    code = _CODES.get(kind) if isinstance(kind, str) else None
    if code is None:
        raise GeometryError(f"{where}.type: unknown geometry type {kind!r}")
    assert isinstance(kind, str)
    if kind == "GeometryCollection":
        members = geom.get("geometries")
        if not isinstance(members, list):
            raise GeometryError(f"{where}.geometries: expected an array")
        body = [_encode(g, bounds, f"{where}.geometries[{i}]") for i, g in enumerate(members)]
        return _HEADER.pack(1, code) + _COUNT.pack(len(body)) + b"".join(body)
    coords = geom.get("coordinates")
    dim = _dim_of(coords, _DEPTH[kind])
    head = _HEADER.pack(1, code + (1000 if dim == 3 else 0))
    at = f"{where}.coordinates"
    if kind == "Point":
        if coords == []:
            return head + struct.pack(f"<{dim}d", *([math.nan] * dim))
        return head + _flat([coords], dim, False, bounds, at)[4:]
    if kind == "LineString":
        return head + _flat(coords, dim, False, bounds, at)
    if kind == "Polygon":
        return head + _rings(coords, dim, bounds, at)
    if not isinstance(coords, list):
        raise GeometryError(f"{at}: expected an array")
    sub = {"MultiPoint": 1, "MultiLineString": 2, "MultiPolygon": 3}[kind]
    zcode = 1000 if dim == 3 else 0
    parts = [head, _COUNT.pack(len(coords))]
    for i, member in enumerate(coords):
        mhead = _HEADER.pack(1, sub + zcode)
        if kind == "MultiPoint":
            parts.append(mhead + _flat([member], dim, False, bounds, f"{at}[{i}]")[4:])
        elif kind == "MultiLineString":
            parts.append(mhead + _flat(member, dim, False, bounds, f"{at}[{i}]"))
        else:
            parts.append(mhead + _rings(member, dim, bounds, f"{at}[{i}]"))
    return b"".join(parts)


_POLYGON_1RING = _HEADER.pack(1, 3) + _COUNT.pack(1)


def _simple_polygon(geom: Any) -> bytes | None:
    """The common case in one step: a Polygon with one ring of 2D positions. None: use the general encoder."""
    if type(geom) is not dict or geom.get("type") != "Polygon":
        return None
    rings = geom.get("coordinates")
    if type(rings) is not list or len(rings) != 1:
        return None
    ring = rings[0]
    if type(ring) is not list or not ring:
        return None
    try:
        if set(map(len, ring)) != {2}:
            return None
        vals = list(chain.from_iterable(ring))
        n = len(ring)
        if vals[0] != vals[-2] or vals[1] != vals[-1]:  # open ring: closed in the WKB only
            vals += vals[:2]
            n += 1
        return _POLYGON_1RING + struct.pack(f"<I{len(vals)}d", n, *vals)
    except (TypeError, struct.error):
        return None  # the general encoder reports what is wrong


def geojson_to_wkb(geom: Any, need_bounds: bool = True) -> tuple[bytes, Bounds | None]:
    """Encode a GeoJSON geometry; return WKB and its 2D bounds (None when empty or not asked for).

    GeoParquet's per-file type list is read later from the WKB headers of a whole column (see _geoparquet)."""
    if not need_bounds:
        fast = _simple_polygon(geom)
        if fast is not None:
            return fast, None
    bounds: Bounds | None = [math.inf, math.inf, -math.inf, -math.inf] if need_bounds else None
    wkb = _encode(geom, bounds, "geometry")
    if bounds is None or bounds[0] == math.inf:
        return wkb, None
    return wkb, bounds
