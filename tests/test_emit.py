"""Emit formats, info and sql; staged files open in DuckDB, GeoPandas, Polars and pyarrow."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import orjson
from conftest import canon, corpus_files, needs_shared
from helpers import collection, item, read_ndjson, write_ndjson

import stacbatch
from stacbatch.emit._tree import STRUCTURAL

TREE_FILES = corpus_files("items") + corpus_files("items_legacy") + corpus_files("items_invalid")


def _no_tree_links(doc: dict) -> dict:
    """Links minus the ones a tree writes; a non-list ``links`` (invalid STAC) is replaced by the tree's list."""
    links = doc.get("links")
    if isinstance(links, list):
        kept = [lk for lk in links if not (isinstance(lk, dict) and lk.get("rel") in STRUCTURAL)]
        return {**doc, "links": kept}
    return {k: v for k, v in doc.items() if k != "links"}


@needs_shared
def test_json_tree_is_lossless_apart_from_links(tmp_path: Path) -> None:
    """Every corpus item, loaded file by file into one stage per file, comes back from the tree unchanged
    (links aside); the tree opens in PySTAC and has every item."""
    import pystac

    for path in TREE_FILES:
        stage = str(tmp_path / path.parent.name / path.stem)
        stacbatch.load_to_stage(stage, [str(path)])
        out = tmp_path / "trees" / path.parent.name / path.stem
        res = stacbatch.emit_json_tree(stacbatch.open_stage(stage), str(out))
        expected = {}
        for line in path.read_bytes().splitlines():
            obj = orjson.loads(line)
            if isinstance(obj.get("id"), str) and obj["id"] and obj["id"] != "badGeometryItem":
                expected[(obj.get("collection"), obj["id"])] = obj
        assert res.items == len(expected)
        hrefs = _walk(out / "catalog.json")
        if path.parent.name == "items":  # valid STAC: PySTAC must read the same tree (legacy items crash PySTAC)
            cat = pystac.Catalog.from_file(str(out / "catalog.json"))
            with warnings.catch_warnings():  # PySTAC warns while migrating old extension versions
                warnings.simplefilter("ignore")
                assert sorted(str(Path(i.get_self_href() or "")) for i in cat.get_items(recursive=True)) == hrefs
        seen = 0
        for href in hrefs:
            seen += 1
            doc = orjson.loads(Path(href).read_bytes())
            want = expected[(doc.get("collection"), doc["id"])]
            if not isinstance(want.get("links"), list):
                doc = {k: v for k, v in doc.items() if k != "links"}
            assert canon(_no_tree_links(doc)) == canon(_no_tree_links(want)), (path.name, doc["id"])
        assert seen == len(expected)


def _walk(catalog: Path) -> list[str]:
    """Item files reachable from a catalog by its relative child/item links."""
    found = []
    stack = [catalog]
    while stack:
        doc_path = stack.pop()
        doc = orjson.loads(doc_path.read_bytes())
        for link in doc["links"]:
            target = (doc_path.parent / link["href"]).resolve()
            if link["rel"] == "child":
                stack.append(target)
            elif link["rel"] == "item":
                found.append(str(target))
    return sorted(found)


def test_json_tree_layout_and_collections(tmp_path: Path, tmp_stage: str) -> None:
    coll = collection(
        "c1",
        extent={
            "spatial": {"bbox": [[0, 0, 1, 1]]},
            "temporal": {"interval": [["2021-01-01T00:00:00.1234567Z", None]]},
        },
        links=[{"rel": "license", "href": "https://example.com/license"}],
    )
    (tmp_path / "c1.json").write_bytes(orjson.dumps(coll))
    src = write_ndjson(tmp_path / "i.ndjson", [item("a"), item("b", collection="c2"), item("loose", None)])
    stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "c1.json"), str(src)])
    out = tmp_path / "tree"
    stacbatch.emit_json_tree(stacbatch.open_stage(tmp_stage), str(out), catalog_id="mine")
    root = orjson.loads((out / "catalog.json").read_bytes())
    assert root["id"] == "mine"
    rels = sorted((lk["rel"], lk["href"]) for lk in root["links"])
    assert ("child", "./c1/collection.json") in rels and ("child", "./c2/collection.json") in rels
    assert ("item", "./loose/loose.json") in rels
    c1 = orjson.loads((out / "c1" / "collection.json").read_bytes())
    # Staged collection kept as staged (extents with their exact strings), links rewritten but foreign ones kept.
    assert c1["extent"] == coll["extent"]
    assert {"rel": "license", "href": "https://example.com/license"} in c1["links"]
    assert any(lk["rel"] == "item" and lk["href"] == "./a/a.json" for lk in c1["links"])
    # c2 had no Collection JSON: one is generated from the items.
    c2 = orjson.loads((out / "c2" / "collection.json").read_bytes())
    assert c2["extent"]["spatial"]["bbox"] == [[0.0, 0.0, 1.0, 1.0]]
    a = orjson.loads((out / "c1" / "a" / "a.json").read_bytes())
    assert {lk["rel"]: lk["href"] for lk in a["links"]} == {
        "root": "../../catalog.json",
        "parent": "../collection.json",
        "collection": "../collection.json",
    }
    loose = orjson.loads((out / "loose" / "loose.json").read_bytes())
    assert "collection" not in loose


def test_ndjson_split_filters_and_single_file(tmp_path: Path, tmp_stage: str) -> None:
    items = [
        item(
            f"i{n}",
            collection=f"c{n % 2}",
            **{"properties": {"datetime": "2021-01-01T00:00:00Z", "eo:cloud_cover": n * 10}},
        )
        for n in range(10)
    ] + [item("nocoll", None)]
    stacbatch.load_to_stage(tmp_stage, [str(write_ndjson(tmp_path / "a.ndjson", items))])
    st = stacbatch.open_stage(tmp_stage)
    res = stacbatch.emit_ndjson(st, str(tmp_path / "split"))
    names = sorted(p.name for p in (tmp_path / "split").iterdir())
    assert names == ["_no_collection.ndjson", "c0.ndjson", "c1.ndjson"] and res.items == 11
    res = stacbatch.emit_ndjson(
        st, str(tmp_path / "one.ndjson"), collections=["c1"], where="(properties->>'eo:cloud_cover')::INT > 40"
    )
    assert sorted(i["id"] for i in read_ndjson(tmp_path / "one.ndjson")) == ["i5", "i7", "i9"]
    assert "collection" not in read_ndjson(tmp_path / "split" / "_no_collection.ndjson")[0]


def test_geoparquet_emit(tmp_path: Path, tmp_stage: str) -> None:
    import pyarrow.parquet as pq
    from stac_geoparquet.arrow import stac_table_to_items

    items = [item(f"i{n}", collection="c1") for n in range(5)]
    stacbatch.load_to_stage(tmp_stage, [str(write_ndjson(tmp_path / "a.ndjson", items))])
    res = stacbatch.emit_geoparquet(stacbatch.open_stage(tmp_stage), str(tmp_path / "gp"))
    assert res.items == 5
    back = list(stac_table_to_items(pq.read_table(tmp_path / "gp" / "c1.parquet")))
    assert sorted(i["id"] for i in back) == [f"i{n}" for n in range(5)]


def test_staged_files_open_everywhere(tmp_path: Path, tmp_stage: str) -> None:
    import duckdb
    import geopandas
    import polars as pl
    import pyarrow.parquet as pq

    items = [
        item("p", geometry={"type": "Point", "coordinates": [1.5, 2.5, 3.0]}, bbox=[1.5, 2.5, 3, 1.5, 2.5, 3]),
        item("n", geometry=None, bbox=None),
        item("m"),
    ]
    stacbatch.load_to_stage(tmp_stage, [str(write_ndjson(tmp_path / "a.ndjson", items))])
    st = stacbatch.open_stage(tmp_stage)
    path = str(Path(tmp_stage) / st.manifest.files[0]["path"])
    types = dict(duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()[i][:2] for i in range(11))
    assert types["geometry"].startswith("GEOMETRY") and types["item"] == "JSON"
    gdf = geopandas.read_parquet(path)
    assert gdf.geometry.name == "geometry" and len(gdf) == 3 and gdf.geometry.isna().sum() == 1
    assert pl.read_parquet(path).height == 3
    meta = orjson.loads(pq.read_schema(path).metadata[b"geo"])
    assert meta["version"] == "1.1.0" and "covering" in meta["columns"]["geometry"]
    assert sorted(meta["columns"]["geometry"]["geometry_types"]) == ["Point Z", "Polygon"]
    assert st.to_polars().height == 3 and st.to_arrow().num_rows == 3


def test_info_and_sql_cli(tmp_path: Path, tmp_stage: str) -> None:
    items = [item(f"i{n}", collection="c1", dt=f"20{10 + n}-01-01T00:00:00Z") for n in range(5)]
    stacbatch.load_to_stage(tmp_stage, [str(write_ndjson(tmp_path / "a.ndjson", items))])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stacbatch", *args], capture_output=True, text=True, check=True)

    info = orjson.loads(run("info", "--stage", tmp_stage, "--format", "json").stdout)
    (c1,) = info["collections"]
    assert c1["items"] == 5 and c1["datetime_min"] == "2010-01-01T00:00:00Z"
    assert c1["datetime_max"] == "2014-01-01T00:00:00Z" and c1["bbox"] == [0, 0, 1, 1]
    assert c1["properties"] == {"datetime": 5}
    table = run("info", "--stage", tmp_stage).stdout
    assert "c1" in table and "items       5" in table
    out = run("sql", "--stage", tmp_stage, "SELECT id, properties FROM items ORDER BY id LIMIT 2", "-f", "json")
    rows = [orjson.loads(x) for x in out.stdout.splitlines()]
    assert rows[0] == {"id": "i0", "properties": {"datetime": "2010-01-01T00:00:00Z"}}
    run("sql", "--stage", tmp_stage, "SELECT * FROM collections", "-f", "parquet", "--to", str(tmp_path / "c.parquet"))
    assert (tmp_path / "c.parquet").exists()
    assert "i0" in run("sql", "--stage", tmp_stage, "SELECT id FROM items ORDER BY id").stdout
