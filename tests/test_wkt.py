"""WKT through the kernel (mapping/_geom.py, kernel wkt_geometries): the same doubles, WKB and bounds as shapely,
GeoJSON numbers written as Python's repr writes them, and everything it does not take left to shapely."""

from __future__ import annotations

import json
import random

import numpy as np
import pyarrow as pa
import pytest
import shapely
from conftest import needs_kernel, optional_kernel

from stacbatch.mapping._geom import geometry_columns

_kernel = optional_kernel()
pytestmark = needs_kernel  # (every test here compares the kernel with shapely)

_rng = random.Random(11)


def _num() -> str:
    r = _rng.random()
    if r < 0.3:
        return str(_rng.randint(-180, 180))
    if r < 0.7:
        return f"{_rng.uniform(-180, 180):.{_rng.randint(1, 9)}f}"
    if r < 0.8:
        return repr(_rng.uniform(-1e6, 1e6))
    choices = ["0", "-0", "0.0001", "0.00001", "1e3", "+1", ".5", "1.", "007", "1.50", "123456789012345", "0.000123"]
    return _rng.choice(choices)


def _coords(d: int, n: int) -> str:
    return ", ".join(" ".join(_num() for _ in range(d)) for _ in range(n))


def _ring(d: int) -> str:
    pts = [" ".join(_num() for _ in range(d)) for _ in range(_rng.randint(3, 6))]
    return "(" + ", ".join([*pts, pts[0]] if _rng.random() < 0.95 else pts) + ")"


def _geom(depth: int = 0) -> str:
    d = 3 if _rng.random() < 0.2 else 2
    z = " Z" if d == 3 and _rng.random() < 0.5 else ""
    t = _rng.randint(0, 6 if depth == 0 else 5)
    if t == 0:
        return f"POINT{z} ({_coords(d, 1)})"
    if t == 1:
        return f"LINESTRING{z} ({_coords(d, _rng.randint(1, 5))})"
    if t == 2:
        return f"POLYGON{z} (" + ", ".join(_ring(d) for _ in range(_rng.randint(1, 3))) + ")"
    if t == 3:
        if _rng.random() < 0.5:
            return f"MULTIPOINT{z} ({_coords(d, _rng.randint(1, 4))})"
        return f"MULTIPOINT{z} (" + ", ".join(f"({_coords(d, 1)})" for _ in range(_rng.randint(1, 4))) + ")"
    if t == 4:
        return f"MULTILINESTRING{z} (" + ", ".join(f"({_coords(d, 3)})" for _ in range(_rng.randint(1, 3))) + ")"
    if t == 5:
        polys = ("(" + ", ".join(_ring(d) for _ in range(_rng.randint(1, 2))) + ")" for _ in range(_rng.randint(1, 3)))
        return f"MULTIPOLYGON{z} (" + ", ".join(polys) + ")"
    return "GEOMETRYCOLLECTION (" + ", ".join(_geom(depth + 1) for _ in range(_rng.randint(1, 3))) + ")"


SPECIAL = {
    "point(1 2)": True,
    "  POINT  ( 1   2 )  ": True,
    "POINT (4 50)": True,
    "POLYGON ((0 0, 1 0, 1 1, 0 0))": True,
    "POINT EMPTY": False,
    "POINT M (1 2 3)": False,
    "POINT ZM (1 2 3 4)": False,
    "POINT (1 2 3 4)": False,
    "POINT (1e3 2)": False,
    "POINT (+1 2)": False,
    "POINT (.5 2)": False,
    "POINT (0.00001 2)": False,
    "LINESTRING (1 2)": False,
    "POLYGON ((0 0, 1 0, 1 1, 0 1))": False,
    "POINT (1 2))": False,
    "garbage": False,
    "": False,
}


def _kernel_rows(texts: list[str]) -> tuple[np.ndarray, list[str], list[bytes], np.ndarray]:
    arr = pa.array(texts, pa.large_string())
    ok, joff, js, woff, wkb, box, coff, canon = _kernel.wkt_geometries(arr.buffers()[1], arr.buffers()[2])
    okv = np.frombuffer(ok, np.uint8).astype(bool)
    jo, wo, co = np.frombuffer(joff, np.int64), np.frombuffer(woff, np.int64), np.frombuffer(coff, np.int64)
    jsb, wkbb, canonb = bytes(js), bytes(wkb), bytes(canon)
    jsons = [jsb[jo[i] : jo[i + 1]].decode() for i in range(len(texts))]
    for i in range(len(texts)):  # the canonical stream written beside the GeoJSON is the GeoJSON's
        assert canonb[co[i] : co[i + 1]] == (_kernel.canonical(jsb[jo[i] : jo[i + 1]]) if okv[i] else b"")
    wkbs = [wkbb[wo[i] : wo[i + 1]] for i in range(len(texts))]
    return okv, jsons, wkbs, np.frombuffer(box, np.float64).reshape(-1, 4)


def test_the_kernel_gives_what_shapely_gives() -> None:
    texts = [_geom() for _ in range(4000)] + list(SPECIAL)
    ok, jsons, wkbs, bounds = _kernel_rows(texts)
    geoms = shapely.from_wkt(np.array(texts, object), on_invalid="ignore")
    assert ok.sum() > 500  # the generator is hostile on purpose: most rows hold a number the kernel leaves
    for i, text in enumerate(texts):
        if text in SPECIAL:
            assert bool(ok[i]) == SPECIAL[text], text
        if not ok[i]:
            assert jsons[i] == "" and np.isnan(bounds[i]).all()
            continue
        g = geoms[i]
        assert g is not None, f"the kernel took what shapely refuses: {text}"
        assert wkbs[i] == shapely.to_wkb(g, flavor="iso"), text
        assert json.loads(jsons[i]) == json.loads(shapely.to_geojson(g)), text  # the same doubles
        assert np.array_equal(bounds[i], shapely.bounds(g)), text
        # numbers as Python writes them (GEOS now and then writes 17 digits for the same double)
        assert jsons[i] == json.dumps(json.loads(jsons[i]), separators=(",", ":")), text


@pytest.mark.parametrize("chunks", [1, 3])
def test_geometry_columns_mix_kernel_and_shapely_rows(chunks: int) -> None:
    texts = ["POINT (1 2)", None, "POINT EMPTY", "POLYGON ((0 0, 1 0, 1 1, 0 0))", "POINT (1e3 2)", "nope"]
    parts = [texts[i::chunks] for i in range(chunks)] if chunks > 1 else [texts]
    order = [t for p in parts for t in p]
    column = pa.chunked_array([pa.array(p, pa.string()) for p in parts])
    text, wkb, bounds, canon = geometry_columns(column, "wkt")
    geoms = shapely.from_wkt(np.array(order, object), on_invalid="ignore")
    for i, g in enumerate(geoms):
        if g is None:
            assert not text[i].is_valid and not wkb[i].is_valid and not bounds[0][i].is_valid
            continue
        # the kernel's rows come with the GeoJSON's canonical stream; shapely's (EMPTY, exponents) without
        taken = order[i] in ("POINT (1 2)", "POLYGON ((0 0, 1 0, 1 1, 0 0))")
        assert canon[i].as_py() == (_kernel.canonical(text[i].as_py().encode()) if taken else None)
        assert json.loads(text[i].as_py()) == json.loads(shapely.to_geojson(g))
        assert wkb[i].as_py() == shapely.to_wkb(g, flavor="iso")
        got = [b[i].as_py() for b in bounds]
        assert all((x is None and np.isnan(y)) or x == y for x, y in zip(got, shapely.bounds(g), strict=True))
    assert len(text) == len(order)


def test_mangled_wkt_never_crashes_and_is_never_taken_wrongly() -> None:
    base = [_geom() for _ in range(300)]
    texts = []
    for t in base:
        for _ in range(5):
            chars = list(t)
            for _ in range(_rng.randint(1, 3)):
                k = _rng.randrange(len(chars))
                chars[k] = _rng.choice("(),. -0123456789ZMEPOINT\n\x00é")
            texts.append("".join(chars)[: _rng.randrange(1, len(chars) + 1)])
    ok, _, wkbs, _ = _kernel_rows(texts)
    with np.errstate(all="ignore"):
        geoms = shapely.from_wkt(np.array(texts, object), on_invalid="ignore")
    for i in np.flatnonzero(ok):
        assert geoms[i] is not None, texts[i]
        assert wkbs[i] == shapely.to_wkb(geoms[i], flavor="iso"), texts[i]


def test_point_wkb_from_coordinates_is_what_shapely_writes_for_the_built_geojson() -> None:
    import duckdb

    from stacbatch.mapping._run import _point_wkb

    rng = np.random.default_rng(5)
    special = [-0.0, 0.0, 180.0, -180.0, 90.0, 1e-300, 5e-324, 0.1, 1 / 3, 179.99999999999997]
    xs = np.concatenate([rng.uniform(-180, 180, 3000), special])
    ys = np.concatenate([rng.uniform(-90, 90, 3000), [y / 2 for y in special]])
    con = duckdb.connect()
    con.register("built", pa.table({"x": xs, "y": ys}))
    # the GeoJSON the compiled SELECT builds for a lon/lat point, and shapely's WKB of it (what staging wrote)
    texts = con.sql(
        """SELECT '{"type":"Point","coordinates":' || CAST(to_json([x, y]) AS VARCHAR) || '}' AS g FROM built"""
    ).fetchnumpy()["g"]
    expected = shapely.to_wkb(shapely.from_geojson(np.asarray(texts, dtype=object)), flavor="iso")
    got = _point_wkb(pa.chunked_array([xs]), pa.chunked_array([ys]))
    assert got.type == pa.large_binary()
    assert got.to_pylist() == list(expected)
