"""Item texts assembled by the kernel from a mapping's leaves equal the ones the SQL path concatenates: same values,
same content hashes, valid JSON, whatever the strings hold."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_mapping import MAPPING, SENSORS

from stacbatch.kernel import _canonical
from stacbatch.mapping import read_mapping
from stacbatch.mapping._assemble import available
from stacbatch.mapping._run import Mapper
from stacbatch.mapping._source import MappedSource
from stacbatch.mapping._tree import Arr, Const, Leaf, Obj, program

pytestmark = pytest.mark.skipif(not available(), reason="the C kernel is not built")

#: every shape of the tree: objects whose first member may be left out, constant nulls kept and not, arrays with
#: null elements, empty containers, booleans, integers, doubles, lists, structs and JSON values
SHAPES = """
id: {column: rid}
collection: {column: coll}
datetime: {column: day}
start_datetime: {column: ts}
end_datetime: {column: ts}
geometry: {lonlat: [lon, lat]}
properties:
  name: {column: name}
  n: {column: n}
  x: {column: x}
  flag: {column: flag}
  tags: {column: tags}
  rec: {column: rec}
  label: {template: "<{name}>/{n}"}
  parts: {column: name, split: "a"}
  parts_ab: {column: name, split: "ab"}
  split_list: [{column: name, split: "b"}, {template: "{n}-{name}"}]
  first: {column: name, split: "a", index: 0}
  cased: {case: [{when: "flag", then: {column: x}}], else: {column: name}}
  none: {const: null}
  absent: null
  list: [{column: name}, null, {column: n}, [], {}]
  nested: {maybe: {column: name}, always: 1, deeper: {only: {column: flag}}}
  empty: {}
  default: {column: name, default: {"a": [1, 2.5, null]}}
  default_number: {column: x, default: 0}
  default_text: {column: name, default: "none"}
  default_int: {column: n, cast: int, default: -1.5}
  default_json: {column: rec, default: [1]}
  defaults: [{column: x, default: "x"}, {column: flag, default: false}]
  number_text: {column: x, cast: string}
assets:
  a: {href: "{name}", title: {column: name}}
  b: {href: "https://example.com/{n}.tif", roles: [data]}
"""


def _both(path: str, mapping: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """Item texts and hashes of every record, through the kernel and through the SQL path."""
    doc = read_mapping(mapping)
    src = MappedSource(path, doc)
    units = list(src.units())
    kernel, sql = Mapper(doc, src.columns, assemble=True), Mapper(doc, src.columns, assemble=False)
    empty = units[0].records.slice(0, 0)
    kernel.check(empty)
    sql.check(empty)
    texts: tuple[list[str], list[str], list[str], list[str]] = ([], [], [], [])
    for unit in units:
        a = kernel.run(unit.source, unit.records, unit.first_row)
        b = sql.run(unit.source, unit.records, unit.first_row)
        assert a.failures == b.failures and a.stats == b.stats
        assert (a.columns is None) == (b.columns is None)
        if a.columns is None or b.columns is None:
            continue
        _aligned(a.columns)
        texts[0].extend(a.columns.column("item").to_pylist())
        texts[1].extend(b.columns.column("item").to_pylist())
        texts[2].extend(a.columns.column("__hash").to_pylist())
        texts[3].extend(_canonical.content_hash_text(t) for t in b.columns.column("item").to_pylist())
    assert kernel.assembler is not None and sql.assembler is None  # each took the path asked for
    return texts


def _aligned(columns: pa.RecordBatch) -> None:
    """Each item beside its own query columns."""
    for item, rid in zip(*(columns.column(n).to_pylist() for n in ("item", "__id")), strict=True):
        assert json.loads(item)["id"] == rid


def _same(kernel: list[str], sql: list[str], kernel_hashes: list[str], sql_hashes: list[str]) -> None:
    assert len(kernel) == len(sql)
    assert kernel_hashes == sql_hashes
    for a, b in zip(kernel, sql, strict=True):
        assert a == b  # the same bytes: numbers written as DuckDB's to_json writes them, defaults as given
        assert _canonical.content_hash_text(a) == _canonical.content_hash_text(b)


def test_the_inventory_mapping_assembles_as_the_sql_writes_it(tmp_path: Path) -> None:
    from test_mapping import CSV

    (tmp_path / "inv.csv").write_text(CSV)
    (tmp_path / "sensors.csv").write_text(SENSORS)
    (tmp_path / "map.yaml").write_text(MAPPING)
    # WKT alone, then WKT with a lon/lat fallback (rows whose geometry hash comes from the WKT reader's canonical
    # stream beside rows whose GeoJSON the kernel parses)
    both = MAPPING.replace("geometry: {wkt: wkt}", "geometry: [{wkt: wkt}, {lonlat: [lon, lat]}]")
    (tmp_path / "both.yaml").write_text(both)
    for name, rows in (("map.yaml", 2), ("both.yaml", 3)):
        kernel, sql, kh, sh = _both(str(tmp_path / "inv.csv"), str(tmp_path / name))
        assert len(kernel) == rows  # records fail for a date, and for a WKT without a fallback
        _same(kernel, sql, kh, sh)
        for text in kernel:
            orjson.loads(text)  # strict JSON


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_FLOAT = st.floats(allow_nan=True, allow_infinity=False) | st.sampled_from([0.0, -0.0, 1e300, 5e-324, 0.1])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.none() | _TEXT,
            st.none() | st.integers(-(2**63), 2**63 - 1),
            st.none() | _FLOAT,
            st.none() | st.booleans(),
            st.none() | st.lists(st.none() | _TEXT, max_size=3),
            # microseconds since 1970, a little beyond the years 0001-9999 too (those rows fail alike)
            st.integers(-62135596800000000 - 10**9, 253402300799999999 + 10**9) | st.sampled_from([0, 1, -1, 10]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_values_assemble_as_the_sql_writes_them(tmp_path: Path, rows: list[tuple[object, ...]]) -> None:
    n = len(rows)
    names, ints, floats, flags, tags, stamps = (list(col) for col in zip(*rows, strict=True))
    table = pa.table(
        {
            "name": pa.array(names, pa.string()),
            "n": pa.array(ints, pa.int64()),
            "x": pa.array(floats, pa.float64()),
            "flag": pa.array(flags, pa.bool_()),
            "tags": pa.array(tags, pa.list_(pa.string())),
            "rec": pa.array([{"k": t, "v": i} for t, i in zip(names, ints, strict=True)]),
            "rid": pa.array([str(i) for i in range(n)], pa.string()),
            "coll": pa.array([None if i % 3 == 2 else "c" for i in range(n)], pa.string()),
            "day": pa.array((np.arange(n, dtype=np.int32) * 7) % 5 + 18000, pa.date32()),  # out of order, ties
            "ts": pa.array(stamps, pa.timestamp("us", "UTC")),
            "lon": [1.5] * n,
            "lat": [-2.25] * n,
        }
    )
    path = tmp_path / "recs.parquet"
    pq.write_table(table, path)
    (tmp_path / "shapes.yaml").write_text(SHAPES)
    kernel, sql, kh, sh = _both(str(path), str(tmp_path / "shapes.yaml"))
    _same(kernel, sql, kh, sh)
    # a record whose value is NaN fails (JSON has no NaN), as one whose time is out of range does
    kept = [
        r
        for r in rows
        if -62135596800000000 <= r[5] <= 253402300799999999 and not (isinstance(r[2], float) and math.isnan(r[2]))
    ]
    assert len(kernel) == len(kept)
    for text in kernel:
        orjson.loads(text)  # strict JSON


def test_left_out_members_and_empty_objects() -> None:
    """An object whose members are all left out is written {}; commas stay right whichever are left out."""
    from stacbatch.kernel import _kernel

    root = Obj(
        (
            ("a", Leaf("x"), False),
            ("b", Obj((("c", Leaf("y"), False), ("d", Leaf("x"), False))), True),
            ("e", Arr((Leaf("y"), Const("null"), Arr(()))), True),
            ("f", Const("null"), False),
            ("g", Const("null"), True),
        )
    )
    prog = program(root, _kernel.canonical)
    # leaves in walk order: a=x, c=y, d=x, e[0]=y
    x = pa.array(["1", None, "3"], pa.string())
    y = pa.array([None, "2", None], pa.string())

    def col(arr: pa.Array) -> tuple[int, int, object, object, object]:
        bufs = arr.buffers()
        return 1, arr.offset, bufs[0], bufs[1], bufs[2]

    cols = [col(x), col(y), col(x), col(y)]
    offsets, text, ends, hashes = _kernel.assemble_items(prog.text, prog.canon, prog.pool, cols, 3)
    got = pa.Array.from_buffers(pa.large_string(), 3, [None, pa.py_buffer(offsets), pa.py_buffer(text)]).to_pylist()
    assert got == [
        '{"a":"1","b":{"d":"1"},"e":[null,null,[]],"g":null}',
        '{"b":{"c":"2"},"e":["2",null,[]],"g":null}',
        '{"a":"3","b":{"d":"3"},"e":[null,null,[]],"g":null}',
    ]
    if ends is None:  # hashed by the kernel
        digests = [bytes(hashes)[32 * i : 32 * i + 32].decode() for i in range(3)]
        assert digests == [_canonical.content_hash_text(t) for t in got]


@pytest.mark.skipif(not os.environ.get("STACBATCH_REQUIRE_KERNEL"), reason="only where the full kernel is required")
def test_the_kernel_hashes_assembled_items_itself() -> None:
    """setup.py finds xxHash in pyarrow's headers (a build requirement); without it the hashes are still right
    but taken in Python, item by item."""
    from stacbatch.kernel import _kernel

    assert _kernel.XXH3 == 1


def test_bad_programs_and_columns_are_refused() -> None:
    from stacbatch.kernel import _kernel

    prog = program(Obj((("a", Leaf("x"), False),)), _kernel.canonical)
    arr = pa.array(["v"], pa.string())
    good = (1, 0, None, arr.buffers()[1], arr.buffers()[2])
    with pytest.raises(ValueError, match="column out of range"):
        _kernel.assemble_items(prog.text, prog.canon, prog.pool, [], 1)
    with pytest.raises(ValueError, match="shorter than its rows"):
        _kernel.assemble_items(prog.text, prog.canon, prog.pool, [good], 2)
    bad = prog.text.copy()
    bad[bad[:, 0] == 3, 3] = 1 << 40  # a key beyond the pool
    with pytest.raises(ValueError, match="out of range"):
        _kernel.assemble_items(bad, prog.canon, prog.pool, [good], 1)
    unbalanced = np.array([[4, 0, 0, 0]], np.int64)
    with pytest.raises(ValueError, match="open without close"):
        _kernel.assemble_items(unbalanced, prog.canon, prog.pool, [good], 1)
    with pytest.raises(ValueError, match="kind"):
        _kernel.assemble_items(prog.text, prog.canon, prog.pool, [(9, 0, None, b"", b"")], 1)
    with pytest.raises(ValueError, match="column out of range"):  # a leaf without a column, read
        _kernel.assemble_items(prog.text, prog.canon, prog.pool, [None], 1)
    numbers = pa.array([7], pa.int64())
    as_int = (5, 0, None, numbers.buffers()[1], None)
    leaf = Obj((("a", Leaf("x"), False),))
    tpl = program(leaf, _kernel.canonical, templates={0: [(1, ""), (-1, "/x")]})
    out = _kernel.assemble_items(tpl.text, tpl.canon, tpl.pool, [None, as_int], 1, tpl.pieces)
    assert bytes(out[1]) == b'{"a":"7/x"}'
    with pytest.raises(ValueError, match="piece column out of range"):
        _kernel.assemble_items(tpl.text, tpl.canon, tpl.pool, [None], 1, tpl.pieces)
    with pytest.raises(ValueError, match="not text or an integer"):
        _kernel.assemble_items(tpl.text, tpl.canon, tpl.pool, [None, (6, 0, None, b"\x01", None)], 1, tpl.pieces)
    split = program(leaf, _kernel.canonical, splits={0: ";"})
    out = _kernel.assemble_items(split.text, split.canon, split.pool, [good], 1)
    assert bytes(out[1]) == b'{"a":["v"]}'
    with pytest.raises(ValueError, match="not text"):
        _kernel.assemble_items(split.text, split.canon, split.pool, [as_int], 1)


def test_geometry_alternatives_and_given_bboxes_assemble_as_the_sql_writes_them(tmp_path: Path) -> None:
    """WKT (integral and fractional numbers, -0.0), bbox columns (west may exceed east: the bbox stays as given, the
    bounds are the polygon's) and lon/lat in one mapping: same texts' values and hashes on both paths."""
    table = pa.table(
        {
            "rid": ["a", "b", "c", "d", "e"],
            "wkt": ["POINT (1 2)", "POLYGON ((-0.0 0, 1.5 0, 1.5 2.25, -0.0 0))", None, None, None],
            "w": [None, None, 170.0, 10.5, None],
            "s": [None, None, -10.0, 1.0, None],
            "e": [None, None, -170.0, 20.0, None],
            "n": [None, None, 10.0, 2.0, None],
            "lon": [None, None, None, None, 100.125],
            "lat": [None, None, None, None, -45.0],
            "day": pa.array([18000] * 5, pa.date32()),
        }
    )
    path = tmp_path / "boxes.parquet"
    pq.write_table(table, path)
    (tmp_path / "m.yaml").write_text(
        "id: {column: rid}\ndatetime: {column: day}\n"
        "geometry: [{wkt: wkt}, {bbox: [w, s, e, n]}, {lonlat: [lon, lat]}]\n"
    )
    kernel, sql, kh, sh = _both(str(path), str(tmp_path / "m.yaml"))
    assert len(kernel) == 5
    _same(kernel, sql, kh, sh)
    assert orjson.loads(kernel[2])["bbox"] == [170.0, -10.0, -170.0, 10.0]


def _doubles(seed: int, n: int) -> list[float]:
    """Doubles of every kind: decimals as tables hold them, any bit pattern, powers of two, integers, extremes."""
    import random
    import struct

    rng = random.Random(seed)
    out = [0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e-5, 1e-6, 1e-7, 1e15, 1e16]
    out += [1e20, 1e21, 1e22, 9.999999999999999e20, 0.1, 0.30000000000000004, 2.675, 123456789012345.6]
    for _ in range(n):
        out.append(round(rng.uniform(-1000, 1000), rng.randint(0, 12)))
        out.append(struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0])
        out.append(float(f"{rng.randint(1, 10 ** rng.randint(1, 17))}e{rng.randint(-30, 30)}"))
        out.append(2.0 ** rng.randint(-1074, 1023) * rng.choice((1, -1)))
        out.append(float(rng.randint(-(2**62), 2**62)))
    return [x for x in out if not math.isnan(x)] + [math.nan, math.inf, -math.inf]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(), min_size=1, max_size=50))
def test_doubles_are_written_as_duckdbs_to_json_writes_them(xs: list[float]) -> None:
    """The kernel writes a DOUBLE leaf itself (shortest round-trip digits); the SQL path through DuckDB's to_json:
    the same text for every double."""
    import duckdb

    from stacbatch.kernel import _kernel

    xs = xs + _doubles(len(xs), 400)
    con = duckdb.connect()
    con.register("doubles", pa.table({"i": pa.array(range(len(xs))), "x": pa.array(xs, pa.float64())}))
    expected = [t for (t,) in con.sql("SELECT CAST(to_json(x) AS VARCHAR) FROM doubles ORDER BY i").fetchall()]
    assert [_kernel.json_double(x) for x in xs] == expected
    for x, text in zip(xs, expected, strict=True):
        if math.isfinite(x):
            assert float(text) == x
