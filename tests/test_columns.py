"""Queryable columns (issue 19): typed property columns derived from the item text on every write path, shown by
the items view under their STAC names, and always in agreement with the text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pytest
from conftest import corpus_files, needs_shared
from helpers import write_ndjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stacbatch
from stacbatch.edit import delete, merge, parse_cli_ops, update
from stacbatch.stage._assets import from_text as asset_text
from stacbatch.stage._columns import TYPES, derive
from stacbatch.stage._stage import open_stage
from stacbatch.stage._view import from_text, property_columns

CORPUS_FILES = corpus_files("items")


def _one(stage: Any, query: str) -> Any:
    return stage.connection.execute(query).fetchone()


def disagreements(stage_path: str) -> dict[str, int]:
    """Per shown column: rows where the column is not what the item text says (typed as the column)."""
    out: dict[str, int] = {}
    with open_stage(stage_path) as stage:
        shown = list(property_columns(stage.manifest).items())
        for at in range(0, len(shown), 200):  # one scan for many columns: a query per column takes minutes
            chunk = shown[at : at + 200]
            counts = [
                f'count_if("{s.replace(chr(34), chr(34) * 2)}" IS DISTINCT FROM {from_text(name, typ)})'
                for s, (name, typ) in chunk
            ]
            got = _one(stage, f"SELECT {', '.join(counts)} FROM items")
            assert got is not None
            out.update({s: int(n) for (s, _), n in zip(chunk, got, strict=True) if n})
        # the asset_fields map, the same way (files written before it read it from the text: nothing to compare)
        odd = _one(stage, f"SELECT count_if(asset_fields IS DISTINCT FROM {asset_text()}) FROM items")
        if odd and odd[0]:
            out["asset_fields"] = int(odd[0])
    return out


def _item(i: int, coll: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": f"i{i}",
        "collection": coll,
        "geometry": {"type": "Point", "coordinates": [i % 90, 0]},
        "bbox": [i % 90, 0, i % 90, 0],
        "properties": {"datetime": f"2021-01-{1 + i % 28:02d}T00:00:00Z", **props},
        "links": [],
        "assets": {},
    }


@needs_shared
@pytest.mark.parametrize("batch_size", [1, 2, None])
def test_columns_agree_with_the_text_on_the_real_corpus(tmp_path: Path, batch_size: int | None) -> None:
    stage = str(tmp_path / "s")
    kw = {"batch_size": batch_size} if batch_size else {}
    stacbatch.load_to_stage(stage, [str(p) for p in CORPUS_FILES], workers=1, **kw)
    with open_stage(stage) as s:
        shown = property_columns(s.manifest)
        assert {"eo:cloud_cover", "platform", "proj:epsg", "instruments"} <= set(shown)
        assert shown["eo:cloud_cover"][1] == "double" and shown["instruments"][1] == "list<string>"
        n_col = _one(s, 'SELECT count(*) FROM items WHERE "eo:cloud_cover" < 10')
        n_txt = _one(
            s,
            "SELECT count(*) FROM items"
            " WHERE json_type(item, '/properties/eo:cloud_cover') IN ('BIGINT','UBIGINT','DOUBLE')"
            " AND (item->>'$.properties.\"eo:cloud_cover\"')::DOUBLE < 10",
        )
        assert n_col == n_txt and n_col is not None and n_col[0] > 0
    assert disagreements(stage) == {}


@needs_shared
def test_columns_agree_after_update_delete_and_merge(tmp_path: Path) -> None:
    stage, other = str(tmp_path / "s"), str(tmp_path / "o")
    stacbatch.load_to_stage(stage, [str(p) for p in CORPUS_FILES], workers=1)
    update(stage, parse_cli_ops(["properties.eo:cloud_cover=12.5", "properties.new_flag=true"], [], []), where="true")
    assert disagreements(stage) == {}
    with open_stage(stage) as s:
        assert _one(s, "SELECT count(*) FROM items WHERE new_flag") == _one(s, "SELECT count(*) FROM items")
        assert _one(s, 'SELECT min("eo:cloud_cover"), max("eo:cloud_cover") FROM items') == (12.5, 12.5)
    delete(stage, where="\"eo:cloud_cover\" = 12.5 AND id LIKE '%a%'")
    assert disagreements(stage) == {}
    stacbatch.load_to_stage(other, [str(p) for p in CORPUS_FILES], workers=1)
    merge(other, stage)
    assert disagreements(other) == {}


def test_schema_drift_across_loads_never_fails_and_never_lies(tmp_path: Path) -> None:
    stage = str(tmp_path / "s")
    first = [_item(i, "c", {"x": i, "y": i, "s": "a", "when": "2021-01-01T00:00:00Z"}) for i in range(4)]
    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "a.ndjson", first))], workers=1)
    # later: x turns to text, y to fractions, a new name arrives, s gets a number, when a non-date
    later = [_item(10 + i, "c", {"x": "n/a", "y": 2.5, "z": True, "s": 7, "when": "soon"}) for i in range(3)]
    res = stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "b.ndjson", later))], workers=1)
    assert res.failed == 0 and res.staged == 3
    with open_stage(stage) as s:
        plan = s.manifest.collections["c"]["columns"]
        assert plan["types"] == {"s": "string", "when": "timestamp", "x": "bigint", "y": "double", "z": "boolean"}
        assert _one(s, "SELECT count(*) FROM items WHERE y > 2") == (4,)  # 2, 3 and the three 2.5s
        assert _one(s, 'SELECT count(x), count(s), count("when") FROM items') == (4, 4, 4)
        misses = {k: v for f in s.manifest.files for k, v in f["columns"].get("misses", {}).items()}
        assert misses == {"x": 3, "s": 3, "when": 3}
    assert disagreements(stage) == {}


def test_awkward_names_and_a_name_taken_by_a_core_column(tmp_path: Path) -> None:
    stage = str(tmp_path / "s")
    props = {
        "a.b": 1,
        "with space": "x",
        "ünï": 2.5,
        'q"uote': 1,
        "id": "own",
        "Geometry": 3,
        "Title": "T",
        "title": "t",
    }
    items = [_item(i, "c", props) for i in range(3)]
    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "a.ndjson", items))], workers=1)
    with open_stage(stage) as s:
        shown = property_columns(s.manifest)
        assert {"a.b", "with space", "ünï", 'q"uote', "properties.id", "properties.Geometry", "Title"} <= set(shown)
        assert "title" not in shown  # same name but for case: kept in the text
        assert _one(s, 'SELECT "a.b", "with space", "ünï", "properties.id", id FROM items ORDER BY id LIMIT 1') == (
            1,
            "x",
            2.5,
            "own",
            "i0",
        )
    assert disagreements(stage) == {}


def test_many_property_names_are_capped_and_the_rest_stays_in_the_text(tmp_path: Path) -> None:
    stage = str(tmp_path / "s")
    items = [_item(i, "c", {f"p{k:05d}": k for k in range(3000)}) for i in range(3)]
    res = stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "a.ndjson", items))], workers=1)
    assert res.failed == 0
    with open_stage(stage) as s:
        plan = s.manifest.collections["c"]["columns"]
        assert len(plan["types"]) == 256
        assert not plan.get("closed") and len(plan["text_only"]) == 3000 - 256
        # a name kept in the text is still answered, from the text
        assert _one(s, "SELECT count(*) FROM items WHERE item->>'$.properties.p02999' = '2999'") == (3,)
        raw = _one(s, "SELECT item FROM items ORDER BY id LIMIT 1")
        assert raw is not None and orjson.loads(raw[0]) == items[0]


def test_a_stage_from_before_columns_reads_properties_from_the_text(tmp_path: Path) -> None:
    stage = tmp_path / "s"
    items = [_item(i, "c", {"x": i}) for i in range(5)]
    stacbatch.load_to_stage(str(stage), [str(write_ndjson(tmp_path / "a.ndjson", items))], workers=1)
    doc = json.loads((stage / "manifest.json").read_text())
    doc["format_version"] = 2
    for meta in doc["collections"].values():
        meta.pop("columns", None)
    (stage / "manifest.json").write_text(json.dumps(doc))
    more = [_item(10 + i, "c", {"x": 10 + i}) for i in range(2)] + [_item(20, "d", {"x": 1.5})]
    stacbatch.load_to_stage(str(stage), [str(write_ndjson(tmp_path / "b.ndjson", more))], workers=1)
    with open_stage(str(stage)) as s:
        assert s.manifest.collections["c"]["columns"].get("closed") is True
        assert _one(s, "SELECT count(*) FROM items WHERE x >= 3") == (4,)  # 3, 4 (text), 10, 11; 1.5 is not
    assert disagreements(str(stage)) == {}


@pytest.mark.parametrize("batch_size", [1, 2, None])
def test_lists_of_nulls_beside_numbers_become_a_column(tmp_path: Path, batch_size: int | None) -> None:
    """pyarrow 26's JSON reader builds broken list<null> arrays ([null, null]); such sets are read another way."""
    stage = str(tmp_path / "s")
    values = [[None, None], [1, None], [], None, [None], [2, 3]]
    items = [_item(i, "c", {"v": v, "only_nulls": [None, None]}) for i, v in enumerate(values)]
    kw = {"batch_size": batch_size} if batch_size else {}
    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "a.ndjson", items))], workers=1, **kw)
    with open_stage(stage) as s:
        assert property_columns(s.manifest)["v"] == ("v", "list<bigint>")
        got = s.connection.execute("SELECT v FROM items ORDER BY id").fetchall()
        assert [r[0] for r in got] == values
    assert disagreements(stage) == {}


_scalar = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False, width=64)
    | st.sampled_from(["2020-01-01T00:00:00Z", "2021-06-30T12:34:56.789+02:00", "1999-12-31", "x", "", "é"])
)
_value = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner))
_names = st.sampled_from(["a", "b", "A", "eo:x", "id", "n.m", "sp ace"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    batches=st.lists(
        st.lists(st.dictionaries(_names, _value, max_size=4), min_size=1, max_size=4), min_size=1, max_size=3
    )
)
def test_any_properties_over_several_loads_agree_with_the_text(tmp_path: Path, batches: list[Any]) -> None:
    """Whatever the properties and however they drift across loads: no failed item, and every column agrees."""
    stage = tmp_path / f"s{abs(hash(repr(batches)))}"
    n = 0
    for b, batch in enumerate(batches):
        items = []
        for props in batch:
            items.append(_item(n, "c" if n % 3 else "d", props))
            n += 1
        src = tmp_path / f"{stage.name}-{b}.ndjson"
        src.write_text("".join(json.dumps(i) + "\n" for i in items))  # json: integers past 64 bits too
        res = stacbatch.load_to_stage(str(stage), [str(src)], workers=1, batch_size=2)
        assert res.failed == 0
    assert disagreements(str(stage)) == {}


_TRICKY: list[Any] = [
    *(None, True, False, 0, -1, 2**63 - 1, 2**63, -(2**63), 2**64, 2**70, 1.5, -0.0, 1e300, 2.0),
    *("", "x", "1", "true", "1999-12-31", "2020-01-01T00:00:00", "2020-01-01 00:00:00Z", "2020-02-30T00:00:00Z"),
    *("2020-01-01t10:00:00z", "2020-01-01T10:00Z", "2020-01-01T00:00:00.Z", " 2020-01-01", "2020-1-01"),
    *("2020-01-01T00:00:00+0200", "2020-01-01T00:00:00.1234567+05:30", "0001-01-01T00:00:00Z"),
    *([], [None], [1, None], [1.5], [1, 2.0], [2**63], [2**70], [True], ["a", None], [[]], [{}], [1, "a"]),
    {},
    {"a": 1},
    *({"a": 2**63}, {"a": 2**64, "b": "x"}, {"a": None, "b": None}, {"a": 1.5}, {"b": 1}, {"c": 1}, {"a": [1]}),
    *({"a": True, "b": ""}, {"b": "y", "a": 3}, {"lat": -0.0}, {"lat": 1e300, "a": -1}, {"A": 1}),
]
#: struct types as ``_structs`` names them
STRUCTS = ['struct{"a":"bigint","b":"string"}', 'struct{"a":"double","lat":"double"}', 'struct{"a":"boolean"}']


@pytest.mark.parametrize("typ", [*sorted(TYPES), *STRUCTS])
def test_reading_from_the_text_gives_what_the_column_holds(typ: str) -> None:
    """Where the view reads a property from the item text (another type elsewhere, text-only, older files), it
    must give what a file's column would: the same value, or NULL where the value does not fit."""
    texts = [json.dumps({"properties": {"v": v}}) for v in _TRICKY]
    derived = derive(pa.chunked_array([pa.array(texts)]), {"declared": {"v": typ}})
    column = derived.columns["v"].to_pylist() if "v" in derived.columns else [None] * len(texts)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    got = con.execute(
        f"SELECT {from_text('v', typ)} FROM (SELECT unnest($1)::JSON AS item, generate_subscripts($1, 1) AS i) "
        "ORDER BY i",
        [texts],
    ).fetchall()
    by_value = {repr(v): (c, g[0]) for v, c, g in zip(_TRICKY, column, got, strict=True) if c != g[0]}
    assert by_value == {}


def test_thousands_of_collections_with_different_properties_are_one_branch() -> None:
    """The view reads every file that needs no cast or text fallback in one read_parquet (union_by_name)."""
    from stacbatch.stage._manifest import Manifest
    from stacbatch.stage._view import items_select

    m = Manifest()
    for c in range(3000):
        types = {"p": "double", f"q{c % 40}": "string"}
        m.collections[f"c{c}"] = {"columns": {"types": types, "text_only": {}}}
        m.files.append({"path": f"f{c}.parquet", "collection": f"c{c}", "rows": 1, "columns": {"types": types}})
    sql, names = items_select(m, None, lambda rel: rel)
    assert sql.count("read_parquet([") == 1 and len(names) == 41
    one, _ = items_select(m, ["c7"], lambda rel: rel)
    assert one.count(".parquet'") == 1 and 'CAST(NULL AS VARCHAR) AS "q0"' in one  # the stage's columns, NULL here


def test_a_property_nested_past_the_kernels_and_orjsons_depth_stays_in_the_text(tmp_path: Path) -> None:
    deep = {"x": 1}
    for _ in range(600):
        deep = {"x": deep}
    got = derive(pa.chunked_array([pa.array([json.dumps({"properties": {"deep": deep, "n": 1}})])]), None)
    assert got.types == {"n": "bigint"} and got.text_only == {
        "deep": "objects whose members hold objects, arrays or mixed types"
    }


@pytest.mark.parametrize("batch_size", [1, 2, None])
def test_flat_objects_become_struct_columns_that_widen_across_loads(tmp_path: Path, batch_size: int | None) -> None:
    stage = str(tmp_path / "s")
    kw = {"batch_size": batch_size} if batch_size else {}
    first = [
        _item(i, "c", {"centroid": {"lat": i, "lon": -i}, "geo": {"type": "Point", "coordinates": [i, 0]}})
        for i in range(4)
    ]
    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "a.ndjson", first))], workers=1, **kw)
    with open_stage(stage) as s:
        plan = s.manifest.collections["c"]["columns"]
        assert plan["types"]["centroid"] == 'struct{"lat":"bigint","lon":"bigint"}'
        assert "geo" in plan["text_only"]
    # a later load: fractions, a new member, an object that fits no struct (a nested member), a non-object
    later = [
        _item(10, "c", {"centroid": {"lat": 1.5, "lon": 2, "alt": 3}}),
        _item(11, "c", {"centroid": {"lat": 1, "nested": {"x": 1}}}),
        _item(12, "c", {"centroid": "here"}),
        _item(13, "c", {"centroid": {}}),
    ]
    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "b.ndjson", later))], workers=1, **kw)
    with open_stage(stage) as s:
        typ = s.manifest.collections["c"]["columns"]["types"]["centroid"]
        assert typ == 'struct{"alt":"bigint","lat":"double","lon":"bigint"}'
        got = _one(s, "SELECT list(centroid.lat ORDER BY id), count(centroid), count(centroid.alt) FROM items")
        assert got == ([0.0, 1.0, 1.5, None, None, None, 2.0, 3.0], 6, 1)  # ids i0, i1, i10, ...; {} is a struct
        assert _one(s, "SELECT count(*) FROM items WHERE centroid.lat > 1 AND centroid.lon < 0") == (2,)
    assert disagreements(stage) == {}


@pytest.mark.parametrize("typ", [*sorted(TYPES), *STRUCTS])
def test_a_build_without_the_kernel_derives_the_same_columns(typ: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pure-Python reading (an install without a C compiler) gives the kernel's columns value for value."""
    from stacbatch.stage import _columns

    texts = pa.chunked_array([pa.array([json.dumps({"properties": {"v": v}}) for v in _TRICKY])])
    with_kernel = derive(texts, {"declared": {"v": typ}})
    monkeypatch.setattr(_columns, "_kernel", None)
    without = derive(texts, {"declared": {"v": typ}})
    assert without.types == with_kernel.types and without.misses == with_kernel.misses
    assert {k: c.to_pylist() for k, c in without.columns.items()} == {
        k: c.to_pylist() for k, c in with_kernel.columns.items()
    }
