"""``stacbatch migrate --to 1.1.0``: every migrated item equals PySTAC's own migration of it (the oracle), on the
real corpus and on made-up edge cases; collections are migrated by PySTAC in the same commit; items it does not
migrate are reported and left; a second run changes nothing; items valid before are valid after."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, corpus_files
from helpers import cli, item, read_ndjson
from pystac.serialization import identify_stac_object
from pystac.serialization.migrate import migrate_to_latest
from test_extend import _items, _stage

import stacbatch
from stacbatch.extend import migrate
from stacbatch.kernel._rows import DEFAULT_COLLECTION
from stacbatch.validate import Options, SchemaSource

SHARED_SCHEMAS = CORPUS.parent.parent / "schemas"
PROJ1 = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"
PROJ2 = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
CLS1 = "https://stac-extensions.github.io/classification/v1.0.0/schema.json"
STORAGE1 = "https://stac-extensions.github.io/storage/v1.0.0/schema.json"


def _oracle(doc: dict[str, Any]) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return migrate_to_latest(doc, identify_stac_object(doc))


def _as_migrated(got: dict[str, Any], before: dict[str, Any], where: str = "properties") -> dict[str, Any]:
    """``got`` with ``updated`` as it was before (migrate stamps it, as every edit does; PySTAC does not)."""
    got = copy.deepcopy(got)
    holder, was = (got["properties"], before["properties"]) if where == "properties" else (got, before)
    holder.pop("updated", None)
    if "updated" in was:
        holder["updated"] = was["updated"]
    return got


def _corpus() -> list[dict[str, Any]]:
    items = [d for f in corpus_files("items") for d in read_ndjson(f)]
    return list({(d.get("collection"), d["id"]): d for d in items if isinstance(d, dict) and "id" in d}.values())


def _shared() -> Options:
    return Options(source=SchemaSource.from_env([str(SHARED_SCHEMAS)]))


@pytest.mark.parametrize("n", [1, 2, None])
def test_migrated_corpus_items_equal_pystacs_migration(tmp_path: Path, n: int | None) -> None:
    items = _corpus()
    if not items:
        pytest.skip("the shared corpus is not here")
    if n is not None:  # items with projection v1 (proj:epsg moves), the branch with most to do
        items = [d for d in items if PROJ1 in d.get("stac_extensions", []) and d.get("stac_version") == "1.0.0"][:n]
    stage = _stage(tmp_path, items)
    before = {(d.get("collection") or DEFAULT_COLLECTION, d["id"]): d for d in items}
    res = migrate(stage, validate=False)
    storage = [d for d in items if d.get("stac_version") == "1.0.0" and STORAGE1 in d.get("stac_extensions", [])]
    expected = [d for d in items if d.get("stac_version") == "1.0.0" and d not in storage]
    assert res.edit.changed == len(expected) > 0
    assert sum(res.not_migrated.values()) == len(storage)
    rows = stacbatch.open_stage(stage).sql("SELECT collection, id, item FROM items").fetchall()
    for c, i, text in rows:
        got, was = json.loads(text), before[(c, i)]
        if was in expected:
            assert _as_migrated(got, was) == _oracle(was), (c, i)
        else:  # another version, or an extension PySTAC reshapes: left exactly as it was
            assert got == was
    again = migrate(stage, validate=False)
    assert (again.edit.selected, again.edit.changed, again.edit.files_rewritten) == (0, 0, 0)


def _edge_items() -> list[dict[str, Any]]:
    def one(
        i: str, exts: list[str] | None, props: dict[str, Any], assets: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        d = item(i, **{"stac_version": "1.0.0"})
        d["stac_version"] = "1.0.0"
        if exts is not None:
            d["stac_extensions"] = exts
        d["properties"].update(props)
        if assets is not None:
            d["assets"] = assets
        return d

    classes = [{"value": 1, "name": "water", "color-hint": "0000FF"}, {"value": 2, "name": "land"}]
    return [
        one("license-various", [], {"license": "various"}),
        one("license-proprietary", None, {"license": "proprietary"}),
        one("no-extensions-list", None, {}),
        one("epsg", [PROJ1], {"proj:epsg": 32633}),
        one("epsg-null", [PROJ1], {"proj:epsg": None}),
        one("epsg-zero", [PROJ1], {"proj:epsg": 0}),
        one("epsg-and-code", [PROJ1], {"proj:epsg": 4326, "proj:code": "EPSG:4326"}),
        one("epsg-code-null", [PROJ1], {"proj:epsg": 3857, "proj:code": None}),
        one("epsg-not-declared", [], {"proj:epsg": 32633}),
        one("short-id", ["proj", "tiled-assets"], {"proj:epsg": 2154}),
        one(
            "asset-epsg",
            [PROJ1],
            {},
            {"a": {"href": "https://example.com/a.tif", "proj:epsg": 32610}, "b": {"href": "https://example.com/b"}},
        ),
        one(
            "color-hint",
            [CLS1],
            {},
            {"c": {"href": "https://example.com/c.tif", "classification:classes": classes}},
        ),
        one("already-1.1", [PROJ2], {"proj:code": "EPSG:4326"}),
    ]


def test_edge_cases_equal_pystacs_migration(tmp_path: Path) -> None:
    items = _edge_items()
    items[-1]["stac_version"] = "1.1.0"
    stage = _stage(tmp_path, items)
    res = migrate(stage, validate=False)
    assert res.edit.changed == len(items) - 1
    got = _items(stage)
    for d in items[:-1]:
        assert _as_migrated(got[d["id"]], d) == _oracle(d), d["id"]
    assert got["already-1.1"] == items[-1]
    assert got["epsg"]["properties"]["proj:code"] == "EPSG:32633" and "proj:epsg" not in got["epsg"]["properties"]
    assert got["epsg-not-declared"]["properties"]["proj:epsg"] == 32633  # no projection declared: PySTAC keeps it
    assert got["color-hint"]["assets"]["c"]["classification:classes"][0]["color_hint"] == "0000FF"


def test_collections_are_migrated_by_pystac_in_the_same_commit(tmp_path: Path) -> None:
    cols = sorted((CORPUS / "collections").glob("*/*.json"))
    docs = [json.loads(p.read_text()) for p in cols]
    docs = [
        d for d in docs if isinstance(d, dict) and d.get("type") == "Collection" and d.get("stac_version") == "1.0.0"
    ]
    if not docs:
        pytest.skip("the shared corpus is not here")
    docs = list({d["id"]: d for d in docs}.values())[:20]
    folder = tmp_path / "cols"
    folder.mkdir()
    paths = []
    for n, d in enumerate(docs):
        p = folder / f"c{n}.json"
        p.write_text(json.dumps(d))
        paths.append(str(p))
    items = []
    for d in docs:
        it = item(f"i-{d['id']}", d["id"])
        it["stac_version"] = "1.0.0"
        items.append(it)
    items_file = tmp_path / "items.ndjson"
    items_file.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    stage = str(tmp_path / "stage")
    stacbatch.load_to_stage(stage, [str(items_file), *paths])
    res = migrate(stage, validate=False)
    assert sorted(res.edit.collections_changed) == sorted(d["id"] for d in docs)
    s = stacbatch.open_stage(stage)
    for d in docs:
        got = s.collection_json(d["id"])
        assert got is not None and "updated" in got
        assert _as_migrated(got, d, where="top") == _oracle(d), d["id"]
    rows = s.sql(f"SELECT operation, count(*) FROM audit WHERE run_id = '{res.edit.run_id}' GROUP BY 1").fetchall()
    assert dict(rows) == {"update": len(docs), "update-collection": len(docs)}  # in the same commit


@pytest.mark.skipif(not SHARED_SCHEMAS.is_dir(), reason="the shared schemas are not here")
def test_items_valid_before_are_valid_after(tmp_path: Path) -> None:
    """Against the shared schemas: no item valid as 1.0.0 is invalid as 1.1.0, except where the new version's
    schema is not in the folder (classification v2.0.0)."""
    from stacbatch.validate import validate

    items = [d for d in _corpus() if d.get("stac_version") == "1.0.0"]
    if not items:
        pytest.skip("the shared corpus is not here")
    stage = _stage(tmp_path, items)
    before = validate(stage, options=_shared())
    valid = {(r["collection"], r["id"]) for r in before.verdicts.to_pylist() if r["valid"] and r["kind"] == "item"}
    res = migrate(stage, validate_options=_shared())
    assert res.validation is not None and res.validation.checked >= res.edit.changed
    broken = [
        r
        for r in res.validation.verdicts.to_pylist()
        if not r["valid"] and (r["collection"], r["id"]) in valid and "classification/v2.0.0" not in (r["rule"] or "")
    ]
    assert not broken, broken[:3]


def test_cli_migrate_reports_and_refuses_other_targets(tmp_path: Path) -> None:
    items = _edge_items()
    items.append(item("storage", stac_version="1.0.0"))
    items[-1]["stac_version"] = "1.0.0"
    items[-1]["stac_extensions"] = [STORAGE1]
    stage = _stage(tmp_path, items)
    before = _items(stage)
    r = cli("migrate", "--stage", stage, "--to", "1.2.0")
    assert r.returncode == 4 and "stacbatch migrates to 1.1.0" in r.stderr and "Traceback" not in r.stderr
    r = cli("migrate", "--stage", stage, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert _items(stage) == before
    r = cli("migrate", "--stage", stage, "--no-validate")
    assert r.returncode == 0, r.stderr
    assert "not migrated: 1 item(s)" in r.stderr and "storage" in r.stderr
    assert _items(stage)["storage"] == before["storage"]
    assert _items(stage)["epsg"]["stac_version"] == "1.1.0"
