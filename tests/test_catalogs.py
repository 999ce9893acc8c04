"""Static catalogs keep their structure (issue 18, "Loss of information"): the catalogs a load walks are staged
(ids, fields, parent/child relations) and ``emit --format json`` rebuilds the tree, or organises it anew."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import canon
from helpers import cli as run
from helpers import collection, item

import stacbatch
from stacbatch.emit._tree import STRUCTURAL
from stacbatch.errors import ExitCode


def _catalog(cid: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "Catalog",
        "id": cid,
        "stac_version": "1.1.0",
        "description": f"catalog {cid}",
        "links": [],
        **extra,
    }


def _put(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return path


def _link(doc: dict[str, Any], rel: str, href: str) -> None:
    doc["links"].append({"rel": rel, "href": href, "type": "application/json"})


def build_tree(base: Path) -> dict[str, Any]:
    """root -> a -> c1 -> items; root -> b -> 2020 -> c2 -> items; root -> plain -> items (no collection) and
    plain -> 2020 (a second "2020") -> item. Returns the documents by (kind, key)."""
    root = _catalog(
        "root",
        title="Root",
        stac_extensions=["https://stac-extensions.github.io/version/v1.2.0/schema.json"],
        **{"x:custom": {"n": 1, "l": [1, 2.5, None]}},
    )
    root["links"].append({"rel": "license", "href": "https://example.com/license"})
    a = _catalog("a", title="A")
    b = _catalog("b")
    b2020 = _catalog("2020", title="B 2020")
    plain = _catalog("plain", keywords=["loose"])
    p2020 = _catalog("2020", title="Plain 2020")
    c1 = collection("c1", title="C one")
    c2 = collection("c2")
    items = {
        "c1": [item("c1-1", "c1", "2020-03-01T00:00:00Z"), item("c1-2", "c1", "2021-07-01T00:00:00Z")],
        "c2": [item("c2-1", "c2", "2020-05-01T00:00:00Z"), item("c2-2", "c2", None, start_datetime="2019-01-02")],
        "plain": [item("p-1", None, "2022-01-01T00:00:00Z"), item("p-2", None, None)],
        "p2020": [item("p2020-1", None, "2020-12-31T23:00:00Z")],
    }
    for it, year in ((items["c2"][1], "2019"), (items["plain"][1], "2018")):  # ranges, no datetime
        it.pop("start_datetime", None)
        it["properties"].update(start_datetime=f"{year}-01-02T00:00:00Z", end_datetime=f"{year}-02-02T00:00:00Z")
    _link(root, "child", "./a/catalog.json")
    _link(root, "child", "./b/catalog.json")
    _link(root, "child", "./plain/catalog.json")
    _link(a, "child", "./c1/collection.json")
    _link(b, "child", "./2020/catalog.json")
    _link(b2020, "child", "./c2/collection.json")
    _link(plain, "child", "./2020/catalog.json")
    folders = {"c1": "a/c1", "c2": "b/2020/c2", "plain": "plain", "p2020": "plain/2020"}
    parents = {"c1": c1, "c2": c2, "plain": plain, "p2020": p2020}
    for key, its in items.items():
        for it in its:
            _put(base / folders[key] / it["id"] / f"{it['id']}.json", it)
            _link(parents[key], "item", f"./{it['id']}/{it['id']}.json")
    _put(base / "catalog.json", root)
    _put(base / "a" / "catalog.json", a)
    _put(base / "b" / "catalog.json", b)
    _put(base / "b" / "2020" / "catalog.json", b2020)
    _put(base / "plain" / "catalog.json", plain)
    _put(base / "plain" / "2020" / "catalog.json", p2020)
    _put(base / "a" / "c1" / "collection.json", c1)
    _put(base / "b" / "2020" / "c2" / "collection.json", c2)
    return {
        "catalogs": {"root": root, "a": a, "b": b, "b/2020": b2020, "plain": plain, "plain/2020": p2020},
        "collections": {"c1": c1, "c2": c2},
        "items": items,
    }


def _no_links(doc: dict[str, Any]) -> Any:
    return canon(
        {k: v for k, v in doc.items() if k != "links"}
        | {"links": [lk for lk in doc.get("links", []) if lk.get("rel") not in STRUCTURAL]}
    )


def test_load_stages_the_catalogs(tmp_path: Path, tmp_stage: str) -> None:
    docs = build_tree(tmp_path / "src")
    res = stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "src" / "catalog.json")])
    assert (res.staged, res.failed, res.collections_staged, res.catalogs_staged) == (7, 0, 2, 6)
    m = stacbatch.open_stage(tmp_stage).manifest
    assert {k: (e["type"], e["id"], e["parent"]) for k, e in m.catalogs.items()} == {
        "root": ("Catalog", "root", None),
        "root/a": ("Catalog", "a", "root"),
        "root/a/c1": ("Collection", "c1", "root/a"),
        "root/b": ("Catalog", "b", "root"),
        "root/b/2020": ("Catalog", "2020", "root/b"),
        "root/b/2020/c2": ("Collection", "c2", "root/b/2020"),
        "root/plain": ("Catalog", "plain", "root"),
        "root/plain/2020": ("Catalog", "2020", "root/plain"),
    }
    assert m.catalogs["root"]["children"] == ["root/a", "root/b", "root/plain"]
    stage = stacbatch.open_stage(tmp_stage)
    from stacbatch.stage._catalogs import catalog_doc, read_members

    assert catalog_doc(stage, "root") == docs["catalogs"]["root"]  # as it was, links and all
    members = sorted(read_members(stage.fs, stage.root, m).to_pylist(), key=lambda r: r["id"])
    assert members == [
        {"parent": "root/plain", "collection": "_no_collection", "id": "p-1"},
        {"parent": "root/plain", "collection": "_no_collection", "id": "p-2"},
        {"parent": "root/plain/2020", "collection": "_no_collection", "id": "p2020-1"},
    ]
    assert {m.catalogs[k]["json"] for k in m.catalogs if m.catalogs[k]["type"] == "Catalog"} <= m.referenced()
    assert m.catalog_items in m.referenced()


def _read(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    return doc


def _shape(catalog: Path, check: bool = True) -> dict[str, Any]:
    """The tree under a catalog file by its relative links: per document (kind, id), its children's and items'
    (kind, id); ``check``: every root, parent and collection link resolves, to the right document."""
    out: dict[str, Any] = {}
    stack = [(catalog.resolve(), None)]
    while stack:
        path, parent = stack.pop()
        doc = _read(path)
        links = {lk["rel"]: lk["href"] for lk in doc["links"] if lk["rel"] in ("root", "parent", "collection")}
        if check:
            assert (path.parent / links["root"]).resolve() == catalog.resolve()
        if check and parent is not None:
            assert (path.parent / links["parent"]).resolve() == parent
        key = (doc["type"], doc["id"])
        kids = []
        for lk in doc["links"]:
            target = (path.parent / lk["href"]).resolve()
            if lk["rel"] == "child":
                assert target.is_file(), lk
                kids.append((_read(target)["type"], _read(target)["id"]))
                stack.append((target, path))
            elif lk["rel"] == "item":
                it = _read(target)
                kids.append(("Feature", it["id"]))
                if not check:
                    continue
                ilinks = {x["rel"]: x["href"] for x in it["links"]}
                assert (target.parent / ilinks["parent"]).resolve() == path
                assert (target.parent / ilinks["root"]).resolve() == catalog.resolve()
                if "collection" in ilinks:
                    assert _read((target.parent / ilinks["collection"]).resolve())["id"] == it["collection"]
        out.setdefault(key, []).append(sorted(kids))
    return {k: sorted(v) for k, v in out.items()}


EXPECTED_SHAPE = {
    ("Catalog", "root"): [[("Catalog", "a"), ("Catalog", "b"), ("Catalog", "plain")]],
    ("Catalog", "a"): [[("Collection", "c1")]],
    ("Collection", "c1"): [[("Feature", "c1-1"), ("Feature", "c1-2")]],
    ("Catalog", "b"): [[("Catalog", "2020")]],
    ("Catalog", "2020"): [[("Collection", "c2")], [("Feature", "p2020-1")]],
    ("Collection", "c2"): [[("Feature", "c2-1"), ("Feature", "c2-2")]],
    ("Catalog", "plain"): [[("Catalog", "2020"), ("Feature", "p-1"), ("Feature", "p-2")]],
}


def _docs_by_id(folder: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for p in sorted(folder.rglob("*.json")):
        doc = _read(p)
        found.setdefault((doc["type"], doc["id"]), []).append(doc)
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_emit_rebuilds_the_tree_and_reloads_to_the_same_stage(tmp_path: Path, workers: int) -> None:
    import pystac

    docs = build_tree(tmp_path / "src")
    stage1, stage2 = str(tmp_path / "s1"), str(tmp_path / "s2")
    stacbatch.load_to_stage(stage1, [str(tmp_path / "src" / "catalog.json")], workers=workers, batch_size=2)
    out = tmp_path / "out"
    proc = run("emit", "--stage", stage1, "--format", "json", "--to", str(out))
    assert proc.returncode == 0, proc.stderr
    # the same structure as the source, every link resolving and leading back
    assert _shape(tmp_path / "src" / "catalog.json", check=False) == EXPECTED_SHAPE
    assert _shape(out / "catalog.json") == EXPECTED_SHAPE
    # the same documents, apart from the tree's links
    src, got = _docs_by_id(tmp_path / "src"), _docs_by_id(out)
    assert {k: sorted(map(str, map(_no_links, v))) for k, v in got.items()} == {
        k: sorted(map(str, map(_no_links, v))) for k, v in src.items()
    }
    assert _read(out / "catalog.json")["x:custom"] == docs["catalogs"]["root"]["x:custom"]
    assert {"rel": "license", "href": "https://example.com/license"} in _read(out / "catalog.json")["links"]
    # PySTAC reads the tree: every catalog and item
    cat = pystac.Catalog.from_file(str(out / "catalog.json"))
    assert sorted(i.id for i in cat.get_items(recursive=True)) == sorted(
        i["id"] for its in docs["items"].values() for i in its
    )
    assert sorted(c.id for c in cat.get_all_collections()) == ["c1", "c2"]
    # loading the emitted tree gives the same stage: items, collections, catalogs
    stacbatch.load_to_stage(stage2, [str(out / "catalog.json")], workers=workers)
    s1, s2 = stacbatch.open_stage(stage1), stacbatch.open_stage(stage2)
    q = "SELECT collection, id, item FROM items ORDER BY collection, id"
    rows1 = [(c, i, _no_links(orjson.loads(t))) for c, i, t in s1.sql(q).fetchall()]
    rows2 = [(c, i, _no_links(orjson.loads(t))) for c, i, t in s2.sql(q).fetchall()]
    assert rows1 == rows2 and len(rows1) == 7
    strip = {k: {f: v for f, v in e.items() if f != "json"} for k, e in s1.manifest.catalogs.items()}
    assert strip == {k: {f: v for f, v in e.items() if f != "json"} for k, e in s2.manifest.catalogs.items()}
    from stacbatch.stage._catalogs import catalog_doc, read_members

    for key in s1.manifest.catalogs:
        if s1.manifest.catalogs[key]["type"] == "Catalog":
            assert _no_links(catalog_doc(s2, key) or {}) == _no_links(catalog_doc(s1, key) or {})
    assert read_members(s1.fs, s1.root, s1.manifest).equals(read_members(s2.fs, s2.root, s2.manifest))


def test_organize_by_year_and_month(tmp_path: Path, tmp_stage: str) -> None:
    import pystac

    build_tree(tmp_path / "src")
    undated = tmp_path / "undated.json"
    _put(undated, item("u-1", "c1", None))
    stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "src" / "catalog.json"), str(undated)])
    out = tmp_path / "year"
    proc = run("emit", "--stage", tmp_stage, "-f", "json", "--to", str(out), "--organize-by", "year")
    assert proc.returncode == 0, proc.stderr
    shape = _shape(out / "catalog.json")
    assert shape[("Catalog", "stacbatch")] == [
        [("Catalog", "2018"), ("Catalog", "2020"), ("Catalog", "2022"), ("Collection", "c1"), ("Collection", "c2")]
    ]
    assert shape[("Collection", "c1")] == [[("Catalog", "2020"), ("Catalog", "2021"), ("Catalog", "unknown")]]
    assert (out / "c1" / "2021" / "c1-2" / "c1-2.json").is_file()
    assert (out / "c1" / "unknown" / "u-1" / "u-1.json").is_file()
    assert (out / "c2" / "2019" / "c2-2" / "c2-2.json").is_file()  # by start_datetime
    assert (out / "2020" / "p2020-1" / "p2020-1.json").is_file()  # items without a collection: the root's years
    out = tmp_path / "month"
    proc = run("emit", "--stage", tmp_stage, "-f", "json", "--to", str(out), "--organize-by", "month", "-c", "c2")
    assert proc.returncode == 0, proc.stderr
    assert _shape(out / "catalog.json")[("Collection", "c2")] == [[("Catalog", "2019"), ("Catalog", "2020")]]
    month = _read(out / "c2" / "2020" / "05" / "catalog.json")
    assert month["id"] == "2020-05"
    assert (out / "c2" / "2020" / "05" / "c2-1" / "c2-1.json").is_file()
    cat = pystac.Catalog.from_file(str(out / "catalog.json"))
    assert sorted(i.id for i in cat.get_items(recursive=True)) == ["c2-1", "c2-2"]
    bad = run("emit", "--stage", tmp_stage, "-f", "json", "--to", str(tmp_path / "x"), "--organize-by", "day")
    assert bad.returncode == ExitCode.INPUT and bad.stderr.count("\n") == 1 and "--organize-by" in bad.stderr


def _strip_tree(stage: str) -> None:
    """The stage as a stacbatch from before catalogs were staged wrote it: no catalogs entries."""
    path = Path(stage) / "manifest.json"
    doc = orjson.loads(path.read_bytes())
    del doc["catalogs"], doc["catalog_items"]
    path.write_bytes(orjson.dumps(doc))


def _tree_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.json"))}


def test_old_stage_and_organize_by_collection_emit_as_before(tmp_path: Path) -> None:
    build_tree(tmp_path / "src")
    new, old = str(tmp_path / "new"), str(tmp_path / "old")
    for stage in (new, old):
        stacbatch.load_to_stage(stage, [str(tmp_path / "src" / "catalog.json")])
    _strip_tree(old)
    assert stacbatch.open_stage(old).manifest.catalogs == {}
    stacbatch.emit_json_tree(stacbatch.open_stage(old), str(tmp_path / "t_old"))
    stacbatch.emit_json_tree(stacbatch.open_stage(new), str(tmp_path / "t_new"), organize_by="collection")
    files = _tree_files(tmp_path / "t_old")
    assert files == _tree_files(tmp_path / "t_new")
    assert sorted(f for f in files if f.count("/") < 2) == [
        "c1/collection.json",
        "c2/collection.json",
        "catalog.json",
        "p-1/p-1.json",
        "p-2/p-2.json",
        "p2020-1/p2020-1.json",
    ]
    # the old stage takes a load (which then stages the tree)
    stacbatch.load_to_stage(old, [str(tmp_path / "src" / "catalog.json")])
    assert len(stacbatch.open_stage(old).manifest.catalogs) == 8


def test_reloading_a_catalog_replaces_its_tree(tmp_path: Path, tmp_stage: str) -> None:
    docs = build_tree(tmp_path / "src")
    stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "src" / "catalog.json")])
    # v2: root no longer links b; a has a new title; plain links p-1 only and no sub-catalog
    root, a, plain = docs["catalogs"]["root"], docs["catalogs"]["a"], docs["catalogs"]["plain"]
    root["links"] = [lk for lk in root["links"] if lk["href"] != "./b/catalog.json"]
    a["title"] = "A2"
    plain["links"] = [lk for lk in plain["links"] if "p-1" in lk["href"]]
    _put(tmp_path / "src" / "catalog.json", root)
    _put(tmp_path / "src" / "a" / "catalog.json", a)
    _put(tmp_path / "src" / "plain" / "catalog.json", plain)
    res = stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "src" / "catalog.json")])
    assert (res.failed, res.catalogs_staged) == (0, 3)
    stage = stacbatch.open_stage(tmp_stage)
    assert sorted(stage.manifest.catalogs) == ["root", "root/a", "root/a/c1", "root/plain"]
    out = tmp_path / "out"
    stacbatch.emit_json_tree(stage, str(out))
    shape = _shape(out / "catalog.json")
    # what the tree no longer places hangs from the root: c2 (still staged), items of plain catalogs now gone
    assert shape[("Catalog", "root")] == [
        [("Catalog", "a"), ("Catalog", "plain"), ("Collection", "c2"), ("Feature", "p-2"), ("Feature", "p2020-1")]
    ]
    assert shape[("Catalog", "plain")] == [[("Feature", "p-1")]]
    assert _read(out / "a" / "catalog.json")["title"] == "A2"
    # the replaced Catalog JSON is retired, not deleted under readers, and no longer referenced
    m = stage.manifest
    assert all(e["json"] in m.referenced() for e in m.catalogs.values() if e["type"] == "Catalog")
    assert any(r["path"].startswith("catalogs/") for r in m.retired)


def test_bad_links_are_failures_and_the_walk_goes_on(tmp_path: Path, tmp_stage: str) -> None:
    docs = build_tree(tmp_path / "src")
    root, b = docs["catalogs"]["root"], docs["catalogs"]["b"]
    _link(root, "child", "./missing/catalog.json")
    _link(root, "child", "./a/c1/c1-1/c1-1.json")  # an item, not a catalog
    _link(b, "child", "../catalog.json")  # back to the root: a cycle
    _put(tmp_path / "src" / "catalog.json", root)
    _put(tmp_path / "src" / "b" / "catalog.json", b)
    proc = run("load", str(tmp_path / "src" / "catalog.json"), "--stage", tmp_stage)
    assert proc.returncode == ExitCode.PARTIAL, proc.stderr
    assert "Traceback" not in proc.stderr
    stage = stacbatch.open_stage(tmp_stage)
    assert stage.manifest.item_count() == 7 and len(stage.manifest.catalogs) == 8
    runs = sorted((Path(tmp_stage) / "runs").glob("*/failures.ndjson"))
    recs = [orjson.loads(line) for line in runs[-1].read_bytes().splitlines()]
    reasons = sorted((r["location"], r["reason"].split(";")[0].split(" (")[0]) for r in recs)
    assert reasons == [
        ("child link ../catalog.json", "cycle: the child is an ancestor of this catalog"),
        ("child link ./a/c1/c1-1/c1-1.json", "the child is not a Catalog or Collection"),
        ("child link ./missing/catalog.json", "cannot read the child"),
    ]
    assert all(r["source"].endswith("catalog.json") for r in recs)


def test_non_finite_catalog_is_a_failure_and_keeps_its_place(tmp_path: Path, tmp_stage: str) -> None:
    docs = build_tree(tmp_path / "src")
    path = tmp_path / "src" / "b" / "catalog.json"
    path.write_bytes(path.read_bytes().replace(b'"id": "b"', b'"id": "b",\n  "x:bad": NaN', 1))
    res = stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "src" / "catalog.json")])
    assert (res.failed, res.staged) == (1, 7)
    assert res.first_failures[0]["id"] == "b" and res.first_failures[0]["field"] == "x:bad"
    assert "not a finite JSON number" in res.first_failures[0]["reason"]
    out = tmp_path / "out"
    stacbatch.emit_json_tree(stacbatch.open_stage(tmp_stage), str(out))
    assert _shape(out / "catalog.json")[("Catalog", "b")] == [[("Catalog", "2020")]]
    assert docs["catalogs"]["b"]["id"] == _read(out / "b" / "catalog.json")["id"]


def test_info_shows_the_tree(tmp_path: Path, tmp_stage: str) -> None:
    build_tree(tmp_path / "src")
    stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "src" / "catalog.json")])
    proc = run("info", "--stage", tmp_stage, "--no-properties")
    assert proc.returncode == 0, proc.stderr
    tree = proc.stdout.split("static catalog tree")[1].split("\n\n")[0].splitlines()[1:]
    assert tree == [
        "  root",
        "    a",
        "      c1  (collection)",
        "    b",
        "      2020",
        "        c2  (collection)",
        "    plain",
        "      2020",
    ]
    report = orjson.loads(run("info", "--stage", tmp_stage, "--format", "json", "--no-properties").stdout)
    assert [c["id"] for c in report["catalogs"][0]["children"]] == ["a", "b", "plain"]
