"""Queryables around the columns (issue 19): `info` and `stacbatch queryables`, declared types (`load --queryables`),
`stage.scan()`, edits selecting by columns, and `stacbatch upgrade` of a stage written before columns existed."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest
from conftest import corpus_files, needs_shared
from helpers import cli as run
from helpers import read_ndjson, write_ndjson
from test_columns import _item, _one, disagreements

import stacbatch
from stacbatch.edit import parse_cli_ops, update
from stacbatch.stage import _manifest
from stacbatch.stage._queryables import read_declared
from stacbatch.stage._stage import open_stage
from stacbatch.stage._upgrade import closed_collections

CORPUS_FILES = corpus_files("items")


def _stage(tmp_path: Path) -> str:
    stage = str(tmp_path / "s")
    a = [
        _item(
            i,
            "a",
            {
                "cloud": i * 1.5,
                "sat": "s2",
                "n": i,
                "tags": ["x", "y"],
                "obj": {"k": i},
                "geo": {"type": "Point", "coordinates": [i, 0]},
            },
        )
        for i in range(10)
    ]
    b = [_item(100 + i, "b", {"cloud": i, "when": "2021-02-03T04:05:06Z"}) for i in range(4)]
    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "in.ndjson", a + b))], workers=1)
    return stage


def test_info_lists_each_collections_columns_with_fill_rate_and_text_only_reasons(tmp_path: Path) -> None:
    stage = _stage(tmp_path)
    got = run("info", "--stage", stage, "-f", "json", "--no-properties")
    assert got.returncode == 0, got.stderr
    by_id = {c["id"]: c["queryables"] for c in json.loads(got.stdout)["collections"]}
    assert by_id["a"]["columns"]["cloud"] == {"type": "double", "items": 10}
    assert by_id["a"]["columns"]["tags"]["type"] == "list<string>"
    assert by_id["a"]["columns"]["obj"] == {"type": 'struct{"k":"bigint"}', "items": 10}
    assert by_id["a"]["text_only"] == {"geo": "objects whose members hold objects, arrays or mixed types"}
    assert by_id["b"]["columns"] == {"cloud": {"type": "bigint", "items": 4}, "when": {"type": "timestamp", "items": 4}}
    assert not by_id["a"]["closed"] and not by_id["a"]["legacy"]
    table = run("info", "--stage", stage, "--no-properties")
    assert (
        "cloud" in table.stdout and "100.0%" in table.stdout and "geo" in table.stdout and "text only" in table.stdout
    )


def test_queryables_prints_a_stac_api_queryables_schema(tmp_path: Path) -> None:
    stage = _stage(tmp_path)
    got = run("queryables", "--stage", stage, "--base-url", "http://127.0.0.1:8080/")
    assert got.returncode == 0, got.stderr
    doc = json.loads(got.stdout)
    assert doc["$id"] == "http://127.0.0.1:8080/queryables" and doc["type"] == "object"
    props = doc["properties"]
    assert {"id", "collection", "geometry", "datetime"} <= set(props)
    assert props["cloud"]["type"] == "number" and props["cloud"]["x-stacbatch-items"] == 14  # BIGINT in b widens
    assert props["when"] == {"type": "string", "format": "date-time", "x-stacbatch-items": 4}
    assert props["tags"]["type"] == "array" and props["tags"]["items"] == {"type": "string"}
    assert props["obj"] == {
        "type": "object",
        "properties": {"k": {"type": "integer"}},
        "additionalProperties": False,
        "x-stacbatch-items": 10,
    }
    assert "geo" not in props  # kept in the text
    one = json.loads(run("queryables", "--stage", stage, "-c", "b").stdout)
    assert one["$id"].endswith("/collections/b/queryables") and one["properties"]["cloud"]["type"] == "integer"
    bad = run("queryables", "--stage", stage, "-c", "nope")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "nope" in bad.stderr


def test_declared_queryables_fix_a_collections_types(tmp_path: Path) -> None:
    stage = str(tmp_path / "s")
    schema = {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": "https://example.test/collections/c/queryables",
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "x": {"type": "number"},
            "code": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
            "centroid": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}}},
        },
    }
    qfile = tmp_path / "q.json"
    qfile.write_text(json.dumps(schema))
    items = [
        _item(i, "c", {"x": i, "code": 7 if i == 0 else f"k{i}", "at": "2020-01-01T00:00:00Z", "centroid": {"lat": i}})
        for i in range(3)
    ]
    src = write_ndjson(tmp_path / "a.ndjson", items)
    got = run("load", str(src), "--stage", stage, "--queryables", str(qfile))
    assert got.returncode == 0, got.stderr
    assert "not of their column's type: code (1)" in got.stderr
    with open_stage(stage) as s:
        centroid = 'struct{"lat":"double","lon":"double"}'  # (without the declaration: lat alone, a BIGINT)
        assert s.manifest.settings["queryables"] == {
            "c": {"x": "double", "code": "string", "at": "timestamp", "centroid": centroid}
        }
        assert _one(s, "SELECT sum(centroid.lat), count(centroid.lon) FROM items") == (3.0, 0)
        types = s.manifest.collections["c"]["columns"]["types"]
        assert types["x"] == "double" and types["code"] == "string"  # without the declaration: bigint, mixed
        assert _one(s, "SELECT count(code), sum(x) FROM items") == (2, 3.0)
    # kept for later loads, whatever they hold
    later = [_item(10, "c", {"x": 2.5, "code": "z"})]
    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "b.ndjson", later))], workers=1)
    with open_stage(stage) as s:
        assert s.manifest.collections["c"]["columns"]["types"]["x"] == "double"
    assert disagreements(stage) == {}
    qfile.write_text(json.dumps({"c": {"x": "decimal"}}))
    bad = run("load", str(src), "--stage", stage, "--queryables", str(qfile))
    assert bad.returncode != 0 and "decimal" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_scan_is_a_lazy_frame_that_agrees_with_sql(tmp_path: Path) -> None:
    stage = _stage(tmp_path)
    with open_stage(stage) as s:
        lf = s.scan()
        assert isinstance(lf, pl.LazyFrame)
        got = lf.filter(pl.col("cloud") < 5).select("id").sort("id").collect()["id"].to_list()
        want = [r[0] for r in s.sql("SELECT id FROM items WHERE cloud < 5 ORDER BY id").fetchall()]
        assert got == want and len(want) == 8
        assert s.scan(["b"]).select(pl.len()).collect().item() == 4
        assert s.scan(["b"]).collect_schema()["cloud"] == pl.Float64  # as in `items`: a filter means the same
        assert s.scan(["b"]).filter(pl.col("sat").is_null()).select(pl.len()).collect().item() == 4  # a's column


def test_emit_where_on_a_column_some_collections_lack(tmp_path: Path) -> None:
    stage = _stage(tmp_path)
    out = tmp_path / "out.ndjson"
    got = run("emit", "--stage", stage, "--format", "ndjson", "--to", str(out), "--where", "sat = 's2' OR cloud < 2")
    assert got.returncode == 0, got.stderr
    ids = sorted(i["id"] for i in read_ndjson(out))
    assert ids == sorted([f"i{i}" for i in range(10)] + ["i100", "i101"])  # a all (sat), b's cloud 0 and 1
    tree = tmp_path / "tree"
    got = run("emit", "--stage", stage, "--format", "json", "--to", str(tree), "--where", "n > 8")
    assert got.returncode == 0, got.stderr
    assert len(list(tree.rglob("i9.json"))) == 1 and not list(tree.rglob("i100.json"))


def test_update_where_on_a_column_selects_what_the_text_says(tmp_path: Path) -> None:
    stage = _stage(tmp_path)
    res = update(stage, parse_cli_ops(["properties.flag=true"], [], []), where="cloud >= 3 AND sat IS NULL")
    assert res.changed == 1  # b: cloud 3 (a has sat)
    res = update(stage, parse_cli_ops(["properties.cloud=properties.cloud + 100"], [], []), where="n > 7")
    assert res.changed == 2
    # --set expressions name the view's columns too, in files that have them and in files that do not
    res = update(stage, parse_cli_ops(['properties.twice=cloud * 2 + coalesce("n", 0)'], [], []), where="true")
    assert res.changed == 14
    with open_stage(stage) as s:
        assert _one(s, "SELECT count(*) FROM items WHERE cloud > 100") == (2,)
        assert _one(s, "SELECT count(*) FROM items WHERE flag") == (1,)
        assert _one(s, "SELECT count(*) FROM items WHERE twice IS DISTINCT FROM cloud * 2 + coalesce(n, 0)") == (0,)
        assert _one(s, "SELECT twice FROM items WHERE id = 'i101'") == (2.0,)
    assert disagreements(stage) == {}


def _as_format_2(stage: Path) -> None:
    """Make a stage what stacbatch wrote before columns: files without property columns, no plans."""
    doc = json.loads((stage / "manifest.json").read_text())
    doc["format_version"] = 2
    for meta in doc["collections"].values():
        meta.pop("columns", None)
    for f in doc["files"]:
        f.pop("columns", None)
        path = stage / f["path"]
        table = pq.read_table(path)
        keep = [n for n in table.column_names if not n.startswith("properties.")]
        pq.write_table(table.select(keep), path)
        f["bytes"] = path.stat().st_size
    (stage / "manifest.json").write_text(json.dumps(doc))


@needs_shared
def test_upgrade_gives_an_old_stage_its_columns_and_keeps_every_item(tmp_path: Path) -> None:
    stage = tmp_path / "s"
    stacbatch.load_to_stage(str(stage), [str(p) for p in CORPUS_FILES], workers=1)
    _as_format_2(stage)
    with open_stage(str(stage)) as s:
        assert len(closed_collections(s.manifest)) == len({f["collection"] for f in s.manifest.files})
        before = sorted(r[0] for r in s.sql("SELECT item FROM items").fetchall())
    info = json.loads(run("info", "--stage", str(stage), "-f", "json", "--no-properties").stdout)
    assert all(c["queryables"]["legacy"] for c in info["collections"])
    table = run("info", "--stage", str(stage), "--no-properties").stdout
    assert "run `stacbatch upgrade` to add them" in table
    got = run("upgrade", "--stage", str(stage), "--workers", "1")
    assert got.returncode == 0 and "upgraded" in got.stderr, got.stderr
    with open_stage(str(stage)) as s:
        assert closed_collections(s.manifest) == []
        assert s.manifest.collections["sentinel-2-l2a"]["columns"]["types"]["eo:cloud_cover"] == "double"
        after = sorted(r[0] for r in s.sql("SELECT item FROM items").fetchall())
        assert _one(s, 'SELECT count("eo:cloud_cover") FROM items')[0] > 0
    assert after == before
    assert disagreements(str(stage)) == {}
    again = run("upgrade", "--stage", str(stage))
    assert again.returncode == 0 and "nothing to upgrade" in again.stderr
    out = tmp_path / "out"
    assert run("emit", "--stage", str(stage), "--format", "ndjson", "--to", str(out)).returncode == 0
    emitted = sorted(orjson.dumps(i) for f in sorted(out.rglob("*.ndjson")) for i in read_ndjson(f))
    assert len(emitted) == len(before)


def test_ten_thousand_names_keep_256_columns_and_say_where_the_rest_is(tmp_path: Path) -> None:
    stage = str(tmp_path / "s")
    items = [_item(i, "c", {f"p{k:05d}": k + i for k in range(10_000)}) for i in range(3)]
    got = run("load", str(write_ndjson(tmp_path / "a.ndjson", items)), "--stage", stage)
    assert got.returncode == 0 and "9,744 property name(s) kept in the text only" in got.stderr, got.stderr
    q = json.loads(run("info", "--stage", stage, "-f", "json", "--no-properties").stdout)["collections"][0]
    q = q["queryables"]
    assert len(q["columns"]) == 256 and len(q["text_only"]) == 9_744 and not q["closed"]
    assert set(q["text_only"].values()) == {"over the column cap (256)"}
    with open_stage(stage) as s:
        assert all("text_only" not in f["columns"] for f in s.manifest.files)  # the plan holds them, once
        typed = next(iter(q["columns"]))
        assert _one(s, f'SELECT sum("{typed}") FROM items') is not None
        view = _one(s, "SELECT sql FROM duckdb_views() WHERE view_name = 'items'")[0]
        assert f'CAST("properties.{typed}" AS BIGINT) AS {typed}' in view  # read from its column,
        assert f"'/properties/{typed}'" not in view  # not from the text
    assert disagreements(stage) == {}


def test_mapped_loads_and_transforms_keep_columns_and_text_in_agreement(tmp_path: Path) -> None:
    samples = Path(__file__).resolve().parent.parent / "samples"
    stage = str(tmp_path / "s")
    got = run("load", str(samples / "inventory.csv"), "--mapping", str(samples / "inventory.yaml"), "--stage", stage)
    assert got.returncode == 0, got.stderr
    with open_stage(stage) as s:
        assert s.manifest.collections["demo-inventory"]["columns"]["types"]["eo:cloud_cover"] == "double"
    assert disagreements(stage) == {}
    spec = tmp_path / "t.yaml"
    spec.write_text(
        'where: "true"\n'
        "properties:\n"
        "  cloud_class: {sql: \"CASE WHEN properties.\\\"eo:cloud_cover\\\" < 20 THEN 'clear' ELSE 'cloudy' END\"}\n"
        "rename: {properties.mgrs_tile: properties.grid_code}\n"
    )
    got = run("transform", "--stage", stage, "--mapping", str(spec))
    assert got.returncode == 0, got.stderr
    with open_stage(stage) as s:
        assert _one(s, "SELECT count(grid_code), count(cloud_class) FROM items") == (40, 40)
        assert _one(s, 'SELECT count(*) FROM items WHERE "mgrs_tile" IS NOT NULL') == (0,)
    assert disagreements(stage) == {}


def test_names_equal_but_for_case_in_two_files_of_one_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two files of one write each see one spelling first; read_parquet's union_by_name would take the other
    file's "title" for "Title" if both were read in one branch."""
    monkeypatch.setitem(_manifest.DEFAULT_SETTINGS, "file_max_rows", 2)
    stage = str(tmp_path / "s")
    early = [_item(i, "c", {"Title": f"upper {i}"}) for i in range(2)]  # _item dates: i0, i1 first
    late = [_item(20 + i, "c", {"title": f"lower {i}"}) for i in range(2)]
    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "a.ndjson", early + late))], workers=1)
    with open_stage(stage) as s:
        assert len(s.manifest.files) == 2
        assert s.manifest.collections["c"]["columns"]["text_only"] == {"title": "same name as 'Title' but for case"}
        assert _one(s, 'SELECT count("Title") FROM items') == (2,)
    assert disagreements(stage) == {}


def test_integers_past_64_bits_beside_small_ones_make_a_double_column(tmp_path: Path) -> None:
    stage = str(tmp_path / "s")
    src = tmp_path / "a.ndjson"
    src.write_text("".join(json.dumps(_item(i, "c", {"big": v})) + "\n" for i, v in enumerate([1, 2**70, 3])))
    stacbatch.load_to_stage(stage, [str(src)], workers=1)
    with open_stage(stage) as s:
        assert s.manifest.collections["c"]["columns"]["types"]["big"] == "double"
        assert _one(s, "SELECT sum(big) FROM items") == (float(2**70) + 4,)
    assert disagreements(stage) == {}


def test_a_servers_queryables_with_refs_declares_only_what_has_a_type(tmp_path: Path) -> None:
    qfile = tmp_path / "q.json"
    qfile.write_text(
        json.dumps(
            {
                "$id": "https://example.test/queryables",
                "type": "object",
                "properties": {
                    "datetime": {"type": "string", "format": "date-time"},
                    "eo:cloud_cover": {"$ref": "https://stac-extensions.github.io/eo/v1.1.0/schema.json#/x"},
                    "platform": {"title": "Platform", "type": "string"},
                },
            }
        )
    )
    assert read_declared(str(qfile)) == {"*": {"platform": "string"}}


def test_upgrade_keeps_declared_types(tmp_path: Path) -> None:
    stage = tmp_path / "s"
    items = [_item(i, "c", {"x": i, "y": i}) for i in range(3)]
    stacbatch.load_to_stage(str(stage), [str(write_ndjson(tmp_path / "a.ndjson", items))], workers=1)
    _as_format_2(stage)
    doc = json.loads((stage / "manifest.json").read_text())
    doc["settings"]["queryables"] = {"*": {"x": "double"}}
    (stage / "manifest.json").write_text(json.dumps(doc))
    assert run("upgrade", "--stage", str(stage)).returncode == 0
    with open_stage(str(stage)) as s:
        assert s.manifest.collections["c"]["columns"]["types"] == {"x": "double", "y": "bigint"}
    assert disagreements(str(stage)) == {}
