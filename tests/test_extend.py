"""``stacbatch extend``: the extension interface, alternate-assets built in, declarative files, entry points and
module paths; idempotence, reports of what could not be extended, validation of what changed."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import corpus_files
from helpers import cli, item, read_ndjson, write_ndjson

import stacbatch
from stacbatch.extend import extend
from stacbatch.validate import Options, SchemaSource

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "demo-items.ndjson.gz"
ALT = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"


def _sample(n: int) -> list[dict[str, Any]]:
    with gzip.open(SAMPLE, "rt") as f:
        return [json.loads(next(f)) for _ in range(n)]


def _stage(tmp_path: Path, items: list[dict[str, Any]], name: str = "stage") -> str:
    stage = str(tmp_path / name)
    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / f"{name}.ndjson", items))])
    return stage


def _items(stage: str) -> dict[str, dict[str, Any]]:
    rows = stacbatch.open_stage(stage).sql("SELECT id, item FROM items").fetchall()
    return {i: json.loads(t) for i, t in rows}


def _folded(doc: dict[str, Any], prefix: str = "s3_", key: str = "s3", name: str = "S3") -> dict[str, Any]:
    """The oracle: the fold in plain Python."""
    doc = copy.deepcopy(doc)
    assets = doc["assets"]
    out = {}
    for k, a in assets.items():
        if k.startswith(prefix) and k[len(prefix) :] in assets:
            continue
        a = copy.deepcopy(a)
        if prefix + k in assets:
            twin = dict(assets[prefix + k])
            twin.setdefault("alternate:name", name)
            a["alternate"] = {**a.get("alternate", {}), key: twin}
        out[k] = a
    doc["assets"] = out
    return doc


def _without_updated(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["properties"].pop("updated", None)
    doc["stac_extensions"] = [u for u in doc.get("stac_extensions", []) if u != ALT]
    return doc


@pytest.mark.parametrize("n", [1, 2, 200])
def test_alternate_assets_fold_equals_the_python_oracle_and_is_idempotent(tmp_path: Path, n: int) -> None:
    items = [i for i in _sample(1000) if any(k.startswith("s3_") for k in i["assets"])][:n]
    assert len(items) == n
    stage = _stage(tmp_path, items)
    res = extend(stage, "alternate-assets")
    assert res.edit.changed == n and res.edit.failed == 0
    assert res.validation is not None and res.validation.invalid == 0
    after = _items(stage)
    for doc in items:
        got = after[doc["id"]]
        assert _without_updated(got) == _folded(doc)
        assert got["stac_extensions"].count(ALT) == 1
        assert not any(k.startswith("s3_") for k in got["assets"])
        assert got["properties"]["updated"].endswith("Z")
    files = sorted(f["path"] for f in stacbatch.open_stage(stage).manifest.files)
    again = extend(stage, "alternate-assets")
    assert (again.edit.selected, again.edit.changed, again.edit.files_rewritten) == (0, 0, 0)
    assert sorted(f["path"] for f in stacbatch.open_stage(stage).manifest.files) == files
    assert _items(stage) == after
    runs = (
        stacbatch.open_stage(stage)
        .sql("SELECT count(*) FROM audit WHERE run_id = ?", params=[res.edit.run_id])
        .fetchall()
    )
    assert runs == [(n,)]


def test_alternates_derived_from_href_patterns(tmp_path: Path) -> None:
    host = "https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-protected"
    a = item("a", assets={"B01": {"href": f"{host}/HLS/a.B01.tif"}, "thumb": {"href": "https://x/a.jpg"}})
    b = item("b", assets={"B01": {"href": "https://elsewhere/b.tif"}})
    stage = _stage(tmp_path, [a, b])
    config = tmp_path / "derive.yaml"
    config.write_text(
        "derive:\n"
        "  - match: '^https://data\\.lpdaac\\.earthdatacloud\\.nasa\\.gov/(.*)$'\n"
        "    href: 's3://\\1'\n"
        "    alternate: s3\n"
        "    name: S3\n"
    )
    args = ("extend", "--stage", stage, "-e", "alternate-assets", "--config", str(config), "--no-validate")
    p = cli(*args)
    assert p.returncode == 0, p.stderr
    after = _items(stage)
    assert after["a"]["assets"]["B01"]["alternate"] == {
        "s3": {"href": "s3://lp-prod-protected/HLS/a.B01.tif", "alternate:name": "S3"}
    }
    assert "alternate" not in after["a"]["assets"]["thumb"] and after["b"] == b
    again = cli(*args)
    assert again.returncode == 0 and "0 updated" in again.stderr and "0 file(s) rewritten" in again.stderr
    assert _items(stage) == after


def test_an_s3_asset_without_its_twin_is_reported_not_given_a_stub(tmp_path: Path) -> None:
    lonely = item("lonely", assets={"s3_B09": {"href": "s3://b/B09.tif"}, "B01": {"href": "https://b/B01.tif"}})
    paired = item("paired", assets={"s3_B01": {"href": "s3://b/B01.tif"}, "B01": {"href": "https://b/B01.tif"}})
    stage = _stage(tmp_path, [lonely, paired])
    res = extend(stage, "alternate-assets")
    assert res.edit.changed == 1
    ((_rule, (count, why)),) = res.not_extended.items()
    assert count == 1 and "no asset <key>" in why
    after = _items(stage)
    assert after["lonely"] == lonely  # untouched: no B09 stub, no schema URL
    assert after["paired"]["assets"]["B01"]["alternate"]["s3"] == {"href": "s3://b/B01.tif", "alternate:name": "S3"}


def test_selection_limits_both_the_changes_and_the_report(tmp_path: Path) -> None:
    lonely = item("lonely", assets={"s3_B09": {"href": "s3://b/B09.tif"}})
    paired = item("paired", assets={"s3_B01": {"href": "s3://b/B01.tif"}, "B01": {"href": "https://b/B01.tif"}})
    other = item("other", assets={"s3_B01": {"href": "s3://b/B01.tif"}, "B01": {"href": "https://b/B01.tif"}})
    stage = _stage(tmp_path, [lonely, paired, other])
    ids = tmp_path / "ids.txt"
    ids.write_text("paired\n")
    res = extend(stage, "alternate-assets", ids_file=str(ids))
    assert res.edit.changed == 1 and res.not_extended == {}
    after = _items(stage)
    assert after["other"] == other and "alternate" in after["paired"]["assets"]["B01"]


def test_files_staged_before_asset_fields_are_refused_with_advice(tmp_path: Path) -> None:
    """The fold selects through the asset_fields column: files written before it would be passed over silently."""
    stage = _stage(tmp_path, [item("a", assets={"s3_B01": {"href": "s3://b"}, "B01": {"href": "https://b"}})])
    manifest = Path(stage) / "manifest.json"
    doc = json.loads(manifest.read_text())
    for f in doc["files"]:
        f.pop("columns", None)  # as written before the column existed
    manifest.write_text(json.dumps(doc))
    p = cli("extend", "--stage", stage, "-e", "alternate-assets")
    assert p.returncode == 4 and "run `stacbatch upgrade" in p.stderr, p.stderr


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    items = [i for i in _sample(200) if any(k.startswith("s3_") for k in i["assets"])]
    stage = _stage(tmp_path, items)
    before = _items(stage)
    p = cli("extend", "--stage", stage, "-e", "alternate-assets", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert f"{len(items)} would be updated" in p.stdout and "assets:" in p.stdout
    assert _items(stage) == before


def test_declarative_file_from_outside_the_package(tmp_path: Path) -> None:
    """configs/extensions/cloud-class.yaml, copied elsewhere and run from there: fields set where its where holds,
    the schema URL once, valid against the example schema, and a second run rewrites nothing."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    for name in ("cloud-class.yaml", "cloud-class.schema.json", "INDEX.json"):
        (folder / name).write_bytes((ROOT / "configs" / "extensions" / name).read_bytes())
    items = _sample(60)
    stage = _stage(tmp_path, items)
    args = ("extend", "--stage", stage, "-e", "cloud-class.yaml", "--schemas", ".")
    p = cli(*args, cwd=folder)
    assert p.returncode == 0, p.stderr
    assert "0 invalid" in p.stderr
    after = _items(stage)
    url = "https://example.com/stac/cloud-class/v1.0.0/schema.json"
    for doc in items:
        got = after[doc["id"]]
        cover = doc["properties"].get("eo:cloud_cover")
        if cover is None:
            assert got == doc
            continue
        want = "clear" if cover < 10 else "partly" if cover < 50 else "cloudy"
        assert got["properties"]["cloud:class"] == want and got["properties"]["cloud:scheme"] == "thresholds 10/50"
        assert got["stac_extensions"].count(url) == 1
    again = cli(*args, cwd=folder)
    assert again.returncode == 0 and "0 file(s) rewritten" in again.stderr


#: a custom extension in Python, as a package of a user's would hold it: tags every selected item
TAGGED = """
from typing import Any

from stacbatch.edit import Op
from stacbatch.engine import _sql
from stacbatch.extend import Extension, Plan, Rule


class Tagged(Extension):
    name = "tagged"
    schema_urls = {"v1": "https://example.com/tagged/v1/schema.json"}
    default_variant = "v1"
    config_schema = {"type": "object", "additionalProperties": False, "properties": {"tag": {"type": "string"}}}

    def plan(self, config: dict[str, Any], stage: Any) -> Plan:
        tag = _sql.literal(config.get("tag", "x"))
        return Plan(self.schema_url(config), (Rule("tag", (Op("set", ("properties", "tag"), expr=tag),), "true"),))
"""


def test_entry_point_and_module_path_extensions(tmp_path: Path) -> None:
    """An installed package's entry point (group stacbatch.extensions) and a module:attribute path both load."""
    site = tmp_path / "site"
    (site / "myext").mkdir(parents=True)
    (site / "myext" / "__init__.py").write_text(TAGGED)
    dist = site / "myext-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myext\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[stacbatch.extensions]\ntagged = myext:Tagged\n")
    env = {"PYTHONPATH": str(site)}
    listed = cli("extend", "--list", env=env)
    assert listed.returncode == 0 and "tagged\tentry point myext:Tagged" in listed.stdout
    stage = _stage(tmp_path, [item("a"), item("b")])
    config = tmp_path / "tag.yaml"
    config.write_text("tag: hello\n")
    p = cli("extend", "--stage", stage, "-e", "tagged", "--config", str(config), "--no-validate", env=env)
    assert p.returncode == 0, p.stderr
    assert {d["properties"]["tag"] for d in _items(stage).values()} == {"hello"}
    p = cli("extend", "--stage", stage, "-e", "myext:Tagged", "--no-validate", env=env)
    assert p.returncode == 0, p.stderr
    assert {d["properties"]["tag"] for d in _items(stage).values()} == {"x"}
    assert all(
        d["stac_extensions"].count("https://example.com/tagged/v1/schema.json") == 1 for d in _items(stage).values()
    )


@pytest.mark.parametrize(
    ("args", "config", "expect"),
    [
        (("-e", "no-such-extension"), None, "unknown extension 'no-such-extension'; known: alternate-assets"),
        (
            ("-e", "alternate-assets"),
            "fold:\n  - prefix: s3_\n    colour: red\n",
            "cfg.yaml:3: fold.0.colour: unknown key",
        ),
        (("-e", "alternate-assets"), "variant: v9\n", "cfg.yaml:1: variant:"),
        (("-e", "nowhere.module:Thing"), None, "cannot be imported"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, args: tuple[str, ...], config: str | None, expect: str) -> None:
    stage = _stage(tmp_path, [item("a")])
    extra: tuple[str, ...] = ()
    if config is not None:
        (tmp_path / "cfg.yaml").write_text(config)
        extra = ("--config", str(tmp_path / "cfg.yaml"))
    p = cli("extend", "--stage", stage, *args, *extra)
    assert p.returncode == 4, p.stderr  # ExitCode.INPUT
    assert expect in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_a_declarative_file_with_a_problem_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "ext.yaml"
    bad.write_text("extension: x\nschema: not-a-url\nfields:\n  properties.a: 1\n")
    stage = _stage(tmp_path, [item("a")])
    p = cli("extend", "--stage", stage, "-e", str(bad))
    assert p.returncode == 4 and f"{bad}:2: schema:" in p.stderr, p.stderr


def test_extensions_on_the_real_corpus_change_only_what_they_should(tmp_path: Path) -> None:
    """Over every real item: alternate-assets changes only items with s3_<key> twins (none of these has one), and
    the declarative example adds its fields where eo:cloud_cover is given, all valid after."""
    items = [d for f in corpus_files("items") for d in read_ndjson(f)]
    items = list({(d.get("collection"), d["id"]): d for d in items if isinstance(d, dict) and "id" in d}.values())
    stage = _stage(tmp_path, items)
    before = _items(stage)
    res = extend(stage, "alternate-assets")
    assert res.edit.changed == 0 and _items(stage) == before
    schemas = SchemaSource.from_env([str(ROOT / "configs" / "extensions")])
    res = extend(
        stage, str(ROOT / "configs/extensions/cloud-class.yaml"), validate_options=Options(source=schemas, checks=())
    )
    rows = [json.loads(t) for (t,) in stacbatch.open_stage(stage).sql("SELECT item FROM items").fetchall()]
    with_cover = [d for d in rows if isinstance((d.get("properties") or {}).get("eo:cloud_cover"), int | float)]
    assert res.edit.changed == len(with_cover) > 0
    assert res.validation is not None
    bad = [r for r in res.validation.verdicts.to_pylist() if not r["valid"] and "cloud-class" in (r["rule"] or "")]
    assert not bad, bad[:3]


def test_update_collection_recomputes_extent_summaries_and_item_assets(tmp_path: Path) -> None:
    """Collections kept true: extent, summaries and item_assets computed from the staged items by SQL."""
    cog = "image/tiff; application=geotiff; profile=cloud-optimized"
    docs = [
        item(
            f"i{n}",
            dt=f"2021-0{n + 1}-01T00:00:00Z",
            assets={
                "B01": {"href": f"https://x/{n}/B01.tif", "type": cog, "roles": ["data"] if n else ["data", "x"]},
                **({"B02": {"href": f"https://x/{n}/B02.tif", "title": "Band 2"}} if n < 2 else {}),
            },
        )
        for n in range(3)
    ]
    for n, d in enumerate(docs):
        d["properties"]["platform"] = "sat-a" if n else "sat-b"
    stage = _stage(tmp_path, docs)
    p = cli("update-collection", "c1", "--stage", stage, "--recompute", "extent,summaries,item_assets")
    assert p.returncode == 0, p.stderr
    (coll,) = [
        json.loads(t) for (t,) in stacbatch.open_stage(stage).sql("SELECT collection FROM collections").fetchall()
    ]
    assert coll["item_assets"] == {"B01": {"type": cog}, "B02": {"title": "Band 2"}}
    assert coll["summaries"]["platform"] == ["sat-a", "sat-b"]
    assert coll["extent"]["temporal"]["interval"] == [["2021-01-01T00:00:00Z", "2021-03-01T00:00:00Z"]]
    bad = cli("update-collection", "c1", "--stage", stage, "--recompute", "colour")
    assert bad.returncode == 4 and "unknown colour" in bad.stderr


def test_alternate_assets_fold_on_collection_assets_and_item_assets(tmp_path: Path) -> None:
    col = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": "c1",
        "description": "d",
        "license": "CC-BY-4.0",
        "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [["2021-01-01T00:00:00Z", None]]}},
        "links": [],
        "assets": {
            "meta": {"href": "https://data.example.com/meta.xml", "title": "Metadata"},
            "s3_meta": {"href": "s3://bucket/meta.xml", "title": "Metadata (S3)"},
        },
        "item_assets": {
            "B04": {"type": "image/tiff", "title": "Red"},
            "s3_B04": {"type": "image/tiff", "title": "Red (S3)"},
            "s3_B05": {"type": "image/tiff"},
        },
    }
    (tmp_path / "c1.json").write_text(json.dumps(col))
    it = item("a")
    stage = str(tmp_path / "stage")
    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "i.ndjson", [it])), str(tmp_path / "c1.json")])
    res = extend(stage, "alternate-assets", validate=False)
    assert res.edit.collections_changed == ["c1"]
    got = stacbatch.open_stage(stage).collection_json("c1")
    assert got is not None
    assert got["assets"] == {
        "meta": {
            "href": "https://data.example.com/meta.xml",
            "title": "Metadata",
            "alternate": {"s3": {"href": "s3://bucket/meta.xml", "title": "Metadata (S3)", "alternate:name": "S3"}},
        }
    }
    assert got["item_assets"]["B04"]["alternate"] == {
        "s3": {"type": "image/tiff", "title": "Red (S3)", "alternate:name": "S3"}
    }
    assert "s3_B05" in got["item_assets"]  # no B05 to fold into: left as it is
    assert ALT in got["stac_extensions"] and "updated" in got
    again = extend(stage, "alternate-assets", validate=False)
    assert again.edit.collections_changed == []


def test_a_collection_created_from_yaml_before_its_items(tmp_path: Path) -> None:
    stage = _stage(tmp_path, [item("a")])
    (tmp_path / "c2.yaml").write_text(
        "type: Collection\nstac_version: 1.1.0\nid: c2\ndescription: Made before its items\nlicense: CC-BY-4.0\n"
        "extent: {spatial: {bbox: [[0, 0, 1, 1]]}, temporal: {interval: [['2021-01-01T00:00:00Z', null]]}}\n"
        "links: []\n"
    )
    r = cli("update-collection", "c2", "--stage", stage, "--from", str(tmp_path / "c2.yaml"))
    assert r.returncode == 0, r.stderr
    got = stacbatch.open_stage(stage).collection_json("c2")
    assert got is not None and got["description"] == "Made before its items"
    assert got["created"] == got["updated"]
    later = item("b", "c2", dt="2023-03-01T00:00:00Z")
    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "b.ndjson", [later]))])
    r = cli("update-collection", "c2", "--stage", stage, "--recompute", "extent")
    assert r.returncode == 0, r.stderr
    again = stacbatch.open_stage(stage).collection_json("c2")
    assert again is not None and again["created"] == got["created"] and again["updated"] != got["updated"]
    assert again["extent"]["temporal"]["interval"] == [["2023-03-01T00:00:00Z", "2023-03-01T00:00:00Z"]]
    (tmp_path / "bad.yaml").write_text("type: Feature\nid: c3\n")
    r = cli("update-collection", "c3", "--stage", stage, "--from", str(tmp_path / "bad.yaml"))
    assert r.returncode == 4 and "bad.yaml:1" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = cli("update-collection", "c4", "--stage", stage, "--from", str(tmp_path / "c2.yaml"))
    assert r.returncode == 4 and "not a Collection with id 'c4'" in r.stderr, r.stderr
