"""Queryable columns (issue 19): typed property columns derived from the item text on every write path, shown by
the items view under their STAC names, and always in agreement with the text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import corpus_files
from helpers import write_ndjson

import stacbatch
from stacbatch.edit import delete, merge, parse_cli_ops, update
from stacbatch.stage._stage import open_stage
from stacbatch.stage._view import from_text, property_columns

CORPUS_FILES = corpus_files("items")

pytestmark = pytest.mark.skipif(not CORPUS_FILES, reason="../shared/corpus/real is missing")


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
