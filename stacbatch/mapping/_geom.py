"""Geometry columns a mapping reads from the source (WKT, WKB, GeoJSON): per row its GeoJSON text for the item,
its ISO WKB for the stage and its bounds, computed before the compiled SELECT runs (``Mapper._prepare``).

WKT goes through the kernel (``wkt_geometries``) first: it gives what shapely gives (the same doubles in the same
WKB, bounds and GeoJSON, numbers written as Python's repr writes them, where GEOS sometimes writes 17 digits for a
value that fewer name exactly: -3.3322600000000002 for -3.33226, the same double) without a Python object per row.
Rows it does not take (EMPTY, M coordinates, exponents, very long or tiny numbers, anything malformed) go through
shapely, which also decides what does not parse.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

try:
    from stacbatch.kernel import _kernel
except ImportError:  # pragma: no cover - a build without a C compiler: shapely reads everything
    _kernel = None  # type: ignore[assignment]


def _shapely_columns(values: np.ndarray, kind: str) -> tuple[pa.Array, pa.Array, np.ndarray]:
    import shapely

    with np.errstate(all="ignore"):  # a huge number in a text is a value that does not parse, not a warning
        if kind == "wkt":
            geoms = shapely.from_wkt(values, on_invalid="ignore")
        elif kind == "geojson":
            geoms = shapely.from_geojson(values, on_invalid="ignore")
        else:
            geoms = shapely.from_wkb(values, on_invalid="ignore")
    text = pa.array(shapely.to_geojson(geoms), pa.string())
    wkb = pa.array(shapely.to_wkb(geoms, flavor="iso"), pa.binary())
    return text, wkb, shapely.bounds(geoms)


def _kernel_wkt(column: pa.ChunkedArray) -> tuple[pa.Array, pa.Array, np.ndarray, pa.Array] | None:
    assert _kernel is not None
    text = column.combine_chunks()
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        return None
    text = text.cast(pa.large_string())
    n = len(text)
    bufs = text.buffers()
    offsets = np.frombuffer(bufs[1], np.int64)[text.offset : text.offset + n + 1]
    ok_b, joff, js, woff, wkb, box, coff, canon = _kernel.wkt_geometries(offsets, bufs[2] or b"")
    ok = np.frombuffer(ok_b, np.uint8).astype(bool)
    valid = None if ok.all() else pa.py_buffer(np.packbits(ok, bitorder="little"))
    nulls = int(n - ok.sum())
    json_col = pa.Array.from_buffers(pa.large_string(), n, [valid, pa.py_buffer(joff), pa.py_buffer(js)], nulls)
    wkb_col = pa.Array.from_buffers(pa.large_binary(), n, [valid, pa.py_buffer(woff), pa.py_buffer(wkb)], nulls)
    # null for rows shapely takes: the item assembler then reads their canonical stream from the GeoJSON text
    canon_col = pa.Array.from_buffers(pa.large_binary(), n, [valid, pa.py_buffer(coff), pa.py_buffer(canon)], nulls)
    bounds = np.frombuffer(box, np.float64).reshape(-1, 4)
    rest = np.flatnonzero(~ok & text.is_valid().to_numpy(zero_copy_only=False))
    if not len(rest):
        return json_col, wkb_col, bounds, canon_col
    # rows the kernel left: shapely's, put in their places (one gather)
    values = text.take(pa.array(rest)).to_numpy(zero_copy_only=False)
    s_json, s_wkb, s_bounds = _shapely_columns(values, "wkt")
    index = np.arange(n)
    index[rest] = n + np.arange(len(rest))
    take = pa.array(index)
    json_col = pa.concat_arrays([json_col, s_json.cast(pa.large_string())]).take(take)
    wkb_col = pa.concat_arrays([wkb_col, s_wkb.cast(pa.large_binary())]).take(take)
    bounds = bounds.copy()
    bounds[rest] = s_bounds
    return json_col, wkb_col, bounds, canon_col


def geometry_columns(column: pa.ChunkedArray, kind: str) -> tuple[pa.Array, pa.Array, list[pa.Array], pa.Array]:
    """(GeoJSON text, ISO WKB, [xmin, ymin, xmax, ymax], the GeoJSON's canonical stream) of a source column of
    WKT, WKB or GeoJSON; nulls where a value is missing or does not parse (and canonical streams where the kernel
    did not read the row)."""
    got: Any = _kernel_wkt(column) if kind == "wkt" and _kernel is not None else None
    if got is None:
        text, wkb, bounds = _shapely_columns(column.to_numpy(zero_copy_only=False), kind)
        canon = pa.nulls(len(text), pa.large_binary())
    else:
        text, wkb, bounds, canon = got
    return text, wkb, [pa.array(bounds[:, i], pa.float64(), mask=np.isnan(bounds[:, i])) for i in range(4)], canon
