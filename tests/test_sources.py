"""Every source kind load accepts, and last-wins replacement."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest
from conftest import canon
from helpers import collection, item, read_ndjson, write_ndjson

import stacbatch
from stacbatch.sources import _detect


def _emit(stage: str, tmp_path: Path) -> dict[str, dict]:
    out = tmp_path / "out.ndjson"
    stacbatch.emit_ndjson(stacbatch.open_stage(stage), str(out))
    return {i["id"]: i for i in read_ndjson(out)}


ITEMS = [item(f"i{n}", collection=("c1" if n % 2 else "c2"), dt=f"2021-0{1 + n % 9}-01T00:00:00Z") for n in range(10)]


def test_gzipped_ndjson(tmp_path: Path, tmp_stage: str) -> None:
    src = tmp_path / "items.ndjson.gz"
    src.write_bytes(gzip.compress(b"".join(orjson.dumps(i) + b"\n" for i in ITEMS)))
    res = stacbatch.load_to_stage(tmp_stage, [str(src)])
    assert (res.staged, res.failed) == (10, 0)
    assert {k: canon(v) for k, v in _emit(tmp_stage, tmp_path).items()} == {i["id"]: canon(i) for i in ITEMS}


@pytest.mark.parametrize("shape", ["item", "featurecollection", "array"])
def test_json_documents(tmp_path: Path, tmp_stage: str, shape: str) -> None:
    src = tmp_path / "doc.json"
    if shape == "item":
        doc: object = ITEMS[0]
        want = ITEMS[:1]
    elif shape == "featurecollection":
        doc, want = {"type": "FeatureCollection", "features": ITEMS, "numberMatched": 10}, ITEMS
    else:
        doc, want = ITEMS, ITEMS
    src.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    res = stacbatch.load_to_stage(tmp_stage, [str(src)])
    assert res.staged == len(want)
    assert {k: canon(v) for k, v in _emit(tmp_stage, tmp_path).items()} == {i["id"]: canon(i) for i in want}


def test_huge_json_document_is_streamed(tmp_path: Path, tmp_stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_detect, "WHOLE_DOC_LIMIT", 100)
    big = item("big", collection="c1")
    src = tmp_path / "fc.json"
    body = orjson.dumps({"type": "FeatureCollection", "features": [*ITEMS, big]})
    # An integer beyond 64 bits: yajl's C backend overflows and the pure-Python backend takes over.
    src.write_bytes(body.replace(b'"id":"big"', b'"id":"big","huge":' + str(2**70).encode()))
    res = stacbatch.load_to_stage(tmp_stage, [str(src)], batch_size=3)
    assert (res.staged, res.failed) == (11, 0)
    got = _emit(tmp_stage, tmp_path)
    assert got["big"]["huge"] == 2**70
    assert {k: canon(v) for k, v in got.items() if k != "big"} == {i["id"]: canon(i) for i in ITEMS}


def test_folder_tree(tmp_path: Path, tmp_stage: str) -> None:
    for i in ITEMS:
        p = tmp_path / "tree" / i["collection"] / i["id"] / f"{i['id']}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(orjson.dumps(i, option=orjson.OPT_INDENT_2))
    coll = collection("c1")
    (tmp_path / "tree" / "c1" / "collection.json").write_bytes(orjson.dumps(coll))
    res = stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "tree")], batch_size=2)
    assert (res.staged, res.failed, res.collections_staged) == (10, 0, 1)
    stage = stacbatch.open_stage(tmp_stage)
    assert stage.collection_json("c1") == coll


def test_static_catalog(tmp_path: Path, tmp_stage: str) -> None:
    import pystac

    cat = pystac.Catalog("root", "root catalog")
    coll = pystac.Collection(
        "c1", "a collection", pystac.Extent(pystac.SpatialExtent([[0, 0, 1, 1]]), pystac.TemporalExtent([[None, None]]))
    )
    cat.add_child(coll)
    for i in ITEMS:
        coll.add_item(pystac.Item.from_dict({**i, "collection": "c1", "links": []}))
    cat.normalize_hrefs(str(tmp_path / "cat"))
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    res = stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "cat" / "catalog.json")])
    assert (res.staged, res.failed, res.collections_staged) == (10, 0, 1)
    got = _emit(tmp_stage, tmp_path)
    assert set(got) == {i["id"] for i in ITEMS}


def test_stac_geoparquet_source(tmp_path: Path, tmp_stage: str) -> None:
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    src = tmp_path / "items.parquet"
    to_parquet(parse_stac_items_to_arrow(ITEMS), str(src))
    res = stacbatch.load_to_stage(tmp_stage, [str(src)])
    assert (res.staged, res.failed) == (10, 0)
    got = _emit(tmp_stage, tmp_path)
    assert set(got) == {i["id"] for i in ITEMS}
    assert got["i3"]["properties"]["datetime"].startswith("2021-04-01T00:00:00")


def test_replace_last_wins(tmp_path: Path, tmp_stage: str) -> None:
    write_ndjson(tmp_path / "a.ndjson", ITEMS)
    stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "a.ndjson")])
    changed = [
        item("i1", collection="c1", dt="2030-01-01T00:00:00Z", title="first"),  # moves to another year
        item("i1", collection="c1", dt="2030-01-01T00:00:00Z", title="second"),
        item("new", collection="c1"),
    ]
    write_ndjson(tmp_path / "b.ndjson", changed)
    res = stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "b.ndjson")], batch_size=1)
    assert (res.read, res.staged, res.new, res.replaced, res.duplicates) == (3, 2, 1, 1, 1)
    got = _emit(tmp_stage, tmp_path)
    assert len(got) == 11
    assert got["i1"]["title"] == "second"
    assert stacbatch.open_stage(tmp_stage).manifest.item_count() == 11


def test_same_id_in_two_collections_is_two_items(tmp_path: Path, tmp_stage: str) -> None:
    write_ndjson(tmp_path / "a.ndjson", [item("x", collection="a"), item("x", collection="b"), item("x", None)])
    res = stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "a.ndjson")])
    assert (res.staged, res.replaced) == (3, 0)
    got = read_ndjson(_single(tmp_stage, tmp_path))
    assert sorted(i.get("collection", "-") for i in got) == ["-", "a", "b"]


def _single(stage: str, tmp_path: Path) -> Path:
    out = tmp_path / "all.ndjson"
    stacbatch.emit_ndjson(stacbatch.open_stage(stage), str(out))
    return out


def test_parallel_workers_give_the_same_stage(tmp_path: Path) -> None:
    items = [item(f"p{n}", collection=f"c{n % 3}", dt=f"20{10 + n % 12}-01-01T00:00:00Z") for n in range(3000)]
    # later versions of some items, in other partitions (another year): the last one wins whichever worker had it
    again = [item(f"p{n}", collection=f"c{n % 3}", dt="2009-06-01T00:00:00Z") for n in range(0, 3000, 97)]
    src = write_ndjson(tmp_path / "p.ndjson", items + again)
    from stacbatch.sources import _detect as det

    old = det.CHUNK_BYTES
    det.CHUNK_BYTES = 4096  # many units, so ordering across workers matters
    try:
        a = stacbatch.load_to_stage(str(tmp_path / "sa"), [str(src)], workers=1)
        b = stacbatch.load_to_stage(str(tmp_path / "sb"), [str(src)], workers=2)
    finally:
        det.CHUNK_BYTES = old
    assert a.staged == b.staged == 3000 and a.duplicates == b.duplicates == len(again)
    q = "SELECT collection, id, datetime, content_hash, stage_seq FROM items ORDER BY collection, id"
    assert (
        stacbatch.open_stage(str(tmp_path / "sa")).sql(q).fetchall()
        == stacbatch.open_stage(str(tmp_path / "sb")).sql(q).fetchall()
    )


def test_collections_only(tmp_path: Path, tmp_stage: str) -> None:
    coll = collection("lonely")
    (tmp_path / "collection.json").write_bytes(orjson.dumps(coll))
    res = stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "collection.json")])
    assert (res.staged, res.collections_staged) == (0, 1)
    st = stacbatch.open_stage(tmp_stage)
    assert st.sql("SELECT count(*) FROM items").fetchall() == [(0,)]
    assert st.sql("SELECT id, item_count FROM collections").fetchall() == [("lonely", 0)]
    stacbatch.emit_json_tree(st, str(tmp_path / "tree"))
    assert orjson.loads((tmp_path / "tree" / "lonely" / "collection.json").read_bytes())["id"] == "lonely"


def test_stage_on_an_fsspec_filesystem(tmp_path: Path) -> None:
    """The non-local code path (what S3 will use): fsspec memory:// stands in until the moto harness arrives."""
    import fsspec

    mem = fsspec.filesystem("memory")
    root = f"memory://stage-{tmp_path.name}"
    src = write_ndjson(tmp_path / "a.ndjson", ITEMS)
    try:
        assert stacbatch.load_to_stage(root, [str(src)]).new == 10
        again = stacbatch.load_to_stage(root, [str(src)])
        assert (again.new, again.replaced) == (0, 10)
        st = stacbatch.open_stage(root)
        assert st.sql("SELECT count(*) FROM items").fetchall() == [(10,)]
        out = f"memory://out-{tmp_path.name}/all.ndjson"
        stacbatch.emit_ndjson(st, out)
        with mem.open(out.removeprefix("memory://"), "rb") as f:
            got = {i["id"]: i for i in (orjson.loads(x) for x in f.read().splitlines())}
        assert {k: canon(v) for k, v in got.items()} == {i["id"]: canon(i) for i in ITEMS}
    finally:
        for p in (root, f"memory://out-{tmp_path.name}"):
            if mem.exists(p.removeprefix("memory://")):
                mem.rm(p.removeprefix("memory://"), recursive=True)


def test_workers_spill_their_rows_by_partition(tmp_path: Path) -> None:
    """A worker routes and spills its own rows: one Arrow file, one run of batches per partition, stage_seq =
    unit << 32 | row."""
    import pyarrow as pa

    from stacbatch.sources import LinesUnit
    from stacbatch.stage._manifest import DEFAULT_SETTINGS
    from stacbatch.stage._parse import parse_routed
    from stacbatch.stage._route import Placement, Router

    data = b"".join(orjson.dumps(i) + b"\n" for i in ITEMS)
    place = Placement(Router({}, "year"), None, str(tmp_path), "run1", dict(DEFAULT_SETTINGS), str(tmp_path), False)
    res = parse_routed((3, LinesUnit("x", 1, data)), 4, "run1", place)
    assert res.batches == [] and res.read == len(ITEMS)
    rows = []
    assert len({spill.path for _c, _b, spill in res.parts}) == 1
    for coll, _bucket, spill in res.parts:
        reader = pa.ipc.open_file(pa.memory_map(spill.path))
        table = pa.Table.from_batches([reader.get_batch(spill.first + i) for i in range(spill.count)])
        assert table.num_rows == spill.rows and set(table["collection"].to_pylist()) == {coll}
        rows += table.select(["id", "stage_run", "stage_seq"]).to_pylist()
    assert sorted(r["stage_seq"] for r in rows) == [(3 << 32) + i for i in range(len(ITEMS))]
    by_seq = sorted(rows, key=lambda r: r["stage_seq"])
    assert [r["id"] for r in by_seq] == [i["id"] for i in ITEMS]
    assert {r["stage_run"] for r in rows} == {"run1"}
