"""update and delete: what changes, what keeps its bytes, the audit log, tombstones, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import canon, corpus_files, needs_shared
from helpers import item, read_ndjson, write_ndjson

import stacbatch
from stacbatch.edit import delete, parse_cli_ops, parse_ops_document, update
from stacbatch.errors import InputError, QueryError


def staged(stage: str) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    st = stacbatch.open_stage(stage)
    rows = st.sql("SELECT collection, id, content_hash, item FROM items").fetchall()
    return {(c, i): (h, orjson.loads(j)) for c, i, h, j in rows}


def raw_items(stage: str) -> dict[tuple[str, str], str]:
    st = stacbatch.open_stage(stage)
    return {(c, i): j for c, i, j in st.sql("SELECT collection, id, item::VARCHAR FROM items").fetchall()}


@pytest.fixture
def stage(tmp_path: Path) -> str:
    items = [
        item(
            f"i{n}",
            collection="HLSL30_2.0" if n % 2 else "other",
            properties={"datetime": "2021-06-01T10:00:00.1234567Z", "eo:cloud_cover": n * 10, "platform": "x"},
            assets={"data": {"href": f"https://a/{n}.tif", "type": "image/tiff"}},
        )
        for n in range(12)
    ]
    src = write_ndjson(tmp_path / "in.ndjson", items)
    path = str(tmp_path / "stage")
    stacbatch.load_to_stage(path, [str(src)])
    return path


def test_update_sets_only_the_selected_and_stamps_updated(stage: str) -> None:
    before = staged(stage)
    before_raw = raw_items(stage)
    res = update(
        stage,
        parse_cli_ops(
            [
                "properties.platform='landsat-8'",
                "assets.data.href=replace(assets.data.href, 'https://a/', 's3://b/')",
            ],
            [],
            [],
        ),
        where="collection = 'HLSL30_2.0' AND properties.\"eo:cloud_cover\" > 50",
    )
    assert (res.selected, res.changed) == (3, 3)  # i7, i9, i11
    after = staged(stage)
    after_raw = raw_items(stage)
    changed = {k for k in after if after[k][0] != before[k][0]}
    assert changed == {("HLSL30_2.0", f"i{n}") for n in (7, 9, 11)}
    for key in after:
        if key in changed:
            doc = after[key][1]
            assert doc["properties"]["platform"] == "landsat-8"
            assert doc["assets"]["data"]["href"].startswith("s3://b/")
            assert doc["properties"]["updated"].endswith("Z")
            # nothing else moved: same datetime string, same other fields
            old = before[key][1]
            assert doc["properties"]["datetime"] == old["properties"]["datetime"] == "2021-06-01T10:00:00.1234567Z"
            assert {k: v for k, v in doc.items() if k not in ("properties", "assets")} == {
                k: v for k, v in old.items() if k not in ("properties", "assets")
            }
        else:
            assert after_raw[key] == before_raw[key]  # untouched: the same bytes
    audit = stacbatch.open_stage(stage).sql("SELECT operation, id, paths FROM audit WHERE operation = 'update'")
    rows = sorted(audit.fetchall())
    assert [r[1] for r in rows] == ["i11", "i7", "i9"]
    assert all(r[2] == ["properties.platform", "assets.data.href", "properties.updated"] for r in rows)


def test_update_to_the_same_content_changes_nothing(stage: str) -> None:
    before = raw_items(stage)
    res = update(stage, parse_cli_ops(["properties.platform='x'"], [], []), where="true")
    assert (res.selected, res.changed, res.unchanged) == (12, 0, 12)
    assert raw_items(stage) == before
    # 1 and 1.0 are the same content: still no change
    res = update(stage, parse_cli_ops(['properties."eo:cloud_cover"=10.0'], [], []), where="id = 'i1'")
    assert res.changed == 0


def test_unset_rename_and_null(stage: str) -> None:
    ops = parse_cli_ops(["properties.nothing=NULL"], ["properties.platform"], ["assets.data=assets.image"])
    update(stage, ops, where="id = 'i3'")
    doc = staged(stage)[("HLSL30_2.0", "i3")][1]
    assert "platform" not in doc["properties"]
    assert doc["properties"]["nothing"] is None  # SQL NULL is JSON null, the key kept
    assert "data" not in doc["assets"] and doc["assets"]["image"]["href"] == "https://a/3.tif"


def test_update_file_keeps_its_order(stage: str, tmp_path: Path) -> None:
    doc = {
        "where": "id IN ('i1', 'i2')",
        "operations": [
            {"set": {"properties.stage": "'one'"}},
            {"set": "properties.stage2=properties.stage || '-two'"},  # sees the earlier operation's result
            {"rename": {"properties.stage": "properties.first"}},
        ],
    }
    ops, where, _ids = parse_ops_document(doc, "ops.yaml")
    res = update(stage, ops, where=where)
    assert res.changed == 2
    props = staged(stage)[("other", "i2")][1]["properties"]
    assert props["first"] == "one" and props["stage2"] == "one-two" and "stage" not in props


def test_update_of_datetime_rederives_the_query_columns(stage: str) -> None:
    update(stage, parse_cli_ops(["properties.datetime='2023-02-03T04:05:06Z'"], [], []), where="id = 'i4'")
    st = stacbatch.open_stage(stage)
    (dt,) = st.sql("SELECT datetime FROM items WHERE id = 'i4'").fetchall()[0]
    assert dt.year == 2023 and dt.month == 2


def test_timestamps_are_written_as_rfc3339(stage: str) -> None:
    update(stage, parse_cli_ops(["properties.seen=TIMESTAMPTZ '2020-01-02 03:04:05+00'"], [], []), where="id='i1'")
    assert staged(stage)[("HLSL30_2.0", "i1")][1]["properties"]["seen"] == "2020-01-02T03:04:05.000000Z"


def test_dry_run_writes_nothing(stage: str) -> None:
    version = stacbatch.open_stage(stage).manifest.version
    before = raw_items(stage)
    res = update(stage, parse_cli_ops(["properties.platform='y'"], [], []), where="true", dry_run=True)
    assert res.changed == 12 and res.samples
    assert res.samples[0]["changes"]["properties.platform"] == ["x", "y"]
    assert raw_items(stage) == before and stacbatch.open_stage(stage).manifest.version == version


def test_delete_leaves_tombstones_and_audit(stage: str, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("i1\ni2\n")
    res = delete(stage, ids_file=str(ids))
    assert res.changed == 2
    st = stacbatch.open_stage(stage)
    assert st.manifest.item_count() == 10
    tomb = sorted(st.sql("SELECT collection, id FROM tombstones").fetchall())
    assert tomb == [("HLSL30_2.0", "i1"), ("other", "i2")]
    assert st.sql("SELECT count(*) FROM audit WHERE operation = 'delete'").fetchall() == [(2,)]


def test_ids_file_forms(stage: str, tmp_path: Path) -> None:
    csv = tmp_path / "ids.csv"
    csv.write_text("collection,id\nother,i0\n")
    assert delete(stage, ids_file=str(csv), dry_run=True).changed == 1
    nd = tmp_path / "ids.ndjson"
    nd.write_text('{"collection": "HLSL30_2.0", "id": "i1"}\n')
    assert delete(stage, ids_file=str(nd), dry_run=True).changed == 1


@pytest.mark.parametrize(
    ("where", "sets", "message"),
    [
        ("properties.nope > 1", [], "no staged item has properties.nope"),
        ("properties.platform > 1", [], "Cannot compare"),
        ("id = ", [], "syntax error"),
        ("true", ["properties.x=no_such_function(1)"], "no_such_function"),
        ("true", ["id='x'"], "cannot be edited"),
        ("true; DROP TABLE x", [], "one expression only"),
    ],
)
def test_bad_expressions_fail_before_writing(stage: str, where: str, sets: list[str], message: str) -> None:
    version = stacbatch.open_stage(stage).manifest.version
    with pytest.raises(InputError) as err:
        update(stage, parse_cli_ops(sets or ["properties.a=1"], [], []), where=where)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert stacbatch.open_stage(stage).manifest.version == version


def test_unknown_ids_are_reported(stage: str, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("i1\nnope\n")
    with pytest.raises(InputError, match="1 id\\(s\\) in the ids file are not staged: 'nope'"):
        delete(stage, ids_file=str(ids))
    res = delete(stage, ids_file=str(ids), ignore_unknown_ids=True)
    assert res.changed == 1 and res.unknown_ids == ["nope"]


def test_cli_update_delete_contract(stage: str, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stacbatch", *args, "--stage", stage], capture_output=True, text=True, timeout=120
        )

    p = run("update", "--where", "properties.nope = 1", "--set", "properties.a=1")
    assert p.returncode == 4 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    p = run("update", "--where", "id = 'i1'", "--set", "properties.a=1", "--dry-run")
    assert p.returncode == 0 and "would be updated" in p.stdout and "properties.a: (absent) -> 1" in p.stdout
    ops = tmp_path / "ops.yaml"
    ops.write_text("where: id = 'i1'\noperations:\n  - set: {properties.a: 2}\n  - unset: properties.platform\n")
    p = run("update", "--file", str(ops))
    assert p.returncode == 0, p.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("operations:\n  - sett: x\n")
    p = run("update", "--file", str(bad))
    assert p.returncode == 4 and "operation 1" in p.stderr and "unknown operation 'sett'" in p.stderr
    p = run("delete", "--where", "id = 'i1'")
    assert p.returncode == 0 and "1 deleted" in p.stderr


CORPUS_FILES = corpus_files("items")


@needs_shared
def test_update_of_real_items_changes_only_the_paths_asked(tmp_path: Path) -> None:
    """DuckDB rewrites the JSON of an updated item: apart from the paths set, it must stay canonically equal."""
    stage = str(tmp_path / "stage")
    stacbatch.load_to_stage(stage, [str(p) for p in CORPUS_FILES], workers=1)
    before = staged(stage)
    res = update(stage, parse_cli_ops(["properties.\"stacbatch:mark\"='m'"], [], []), where="true")
    assert res.changed == len(before) and res.failed == 0
    out = tmp_path / "out.ndjson"
    stacbatch.emit_ndjson(stacbatch.open_stage(stage), str(out))
    for doc in read_ndjson(out):
        key = (doc.get("collection") or "_no_collection", doc["id"])
        props = doc["properties"]
        assert props.pop("stacbatch:mark") == "m"
        props.pop("updated")
        old = before[key][1]
        old_props = dict(old.get("properties") or {})
        old_props.pop("updated", None)
        assert canon(props) == canon(old_props), doc["id"]
        assert canon({k: v for k, v in doc.items() if k != "properties"}) == canon(
            {k: v for k, v in old.items() if k != "properties"}
        ), doc["id"]


def test_collection_update_and_extent(tmp_path: Path) -> None:
    from helpers import collection

    from stacbatch.edit import update_collection

    src = write_ndjson(
        tmp_path / "i.ndjson", [item("a", dt="2020-01-01T00:00:00Z"), item("b", dt="2022-05-01T00:00:00Z")]
    )
    coll = tmp_path / "c1.json"
    coll.write_bytes(orjson.dumps(collection("c1")))
    stage = str(tmp_path / "stage")
    stacbatch.load_to_stage(stage, [str(src), str(coll)])
    ops = parse_cli_ops(
        ["title='HLS'", "keywords=['a', 'b']", "providers=[{'name': 'NASA', 'roles': ['host']}]"], ["license"], []
    )
    res = update_collection(stage, "c1", ops, extent=True)
    assert res.changed == ["extent", "keywords", "license", "providers", "title", "updated"]
    doc = stacbatch.open_stage(stage).collection_json("c1")
    assert doc is not None
    assert doc["title"] == "HLS" and doc["keywords"] == ["a", "b"] and "license" not in doc
    assert doc["providers"] == [{"name": "NASA", "roles": ["host"]}]
    assert doc["updated"].endswith("Z") and doc["updated"] == res.after["updated"]
    assert doc["extent"]["temporal"]["interval"] == [["2020-01-01T00:00:00Z", "2022-05-01T00:00:00Z"]]
    assert doc["extent"]["spatial"]["bbox"] == [[0.0, 0.0, 1.0, 1.0]]
    audit = stacbatch.open_stage(stage).sql("SELECT operation, id FROM audit WHERE operation = 'update-collection'")
    assert audit.fetchall() == [("update-collection", "c1")]
    # the same again changes nothing and writes nothing
    version = stacbatch.open_stage(stage).manifest.version
    assert update_collection(stage, "c1", parse_cli_ops(["title='HLS'"], [], [])).run_id is None
    assert stacbatch.open_stage(stage).manifest.version == version
    with pytest.raises(InputError, match="not in the stage"):
        update_collection(stage, "nope", ops)
    with pytest.raises(QueryError, match="no_such"):
        update_collection(stage, "c1", parse_cli_ops(["title=no_such(1)"], [], []))


def _cli(stage: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stacbatch", *args, "--stage", stage], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def bands(tmp_path: Path) -> str:
    """Items i0..i5; the odd ones have an asset B04."""
    items = [
        item(f"i{n}", assets={"data": {"href": f"https://a/{n}.tif"}, **({"B04": {"href": "b"}} if n % 2 else {})})
        for n in range(6)
    ]
    path = str(tmp_path / "bands")
    stacbatch.load_to_stage(path, [str(write_ndjson(tmp_path / "bands.ndjson", items))], workers=1)
    return path


@pytest.mark.parametrize("kernel", [True, False])
def test_set_skips_items_without_the_parent_and_says_so(
    bands: str, monkeypatch: pytest.MonkeyPatch, kernel: bool
) -> None:
    """Issue 18: `--set assets.B04.alternate=...` gave items without asset B04 a new asset without href. By default
    they are skipped for that path and counted (CLI line, run summary); --create-parents creates the parent."""
    before = staged(bands)
    value = "assets.B04.alternate={'s3': {'href': 's3://x'}}"
    dry = _cli(bands, "update", "--where", "true", "--set", value, "--set", "properties.p=1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "assets.B04.alternate: 3 item(s) skipped: they have no assets.B04 object" in dry.stderr
    if not kernel:  # the Python path only (as when an item needs it)
        from stacbatch.edit import _rewrite

        monkeypatch.setattr(_rewrite, "_KERNEL", False)
        res = update(bands, parse_cli_ops([value, "properties.p=1"], [], []), where="true", workers=1)
    else:
        p = _cli(bands, "update", "--where", "true", "--set", value, "--set", "properties.p=1")
        assert p.returncode == 0, p.stderr
        assert "stacbatch: assets.B04.alternate: 3 item(s) skipped: they have no assets.B04 object" in p.stderr
        assert "(pass --create-parents to create it)" in p.stderr and "6 updated" in p.stderr
        res = None
    after = staged(bands)
    for (c, i), (_h, doc) in after.items():
        old = before[(c, i)][1]
        assert doc["properties"]["p"] == 1  # the other path is set on every item
        if "B04" in old["assets"]:
            assert doc["assets"]["B04"] == {"href": "b", "alternate": {"s3": {"href": "s3://x"}}}
        else:
            assert doc["assets"] == old["assets"], i  # no asset without an href
    summary = stacbatch.open_stage(bands).manifest.last_run
    assert summary is not None and summary["skipped_missing_parent"] == {"assets.B04.alternate": 3}
    if res is not None:
        assert res.skipped == {"assets.B04.alternate": 3} and res.changed == 6
    # asked for: the parents are made
    p = _cli(bands, "update", "--where", "true", "--set", "assets.B05.href='c'", "--create-parents")
    assert p.returncode == 0 and "skipped" not in p.stderr, p.stderr
    assert all(doc["assets"]["B05"] == {"href": "c"} for _h, doc in staged(bands).values())


@pytest.mark.parametrize(
    "expr",
    [
        "CASE WHEN id = 'i1' THEN 1e308 * 10 WHEN id = 'i2' THEN 'nan'::DOUBLE ELSE 1 END",
        "CASE WHEN id = 'i1' THEN '[1e999]'::JSON WHEN id = 'i2' THEN [-('inf'::DOUBLE)] ELSE [1.0] END",
    ],
)
def test_set_giving_a_non_finite_number_fails_those_items_only(stage: str, tmp_path: Path, expr: str) -> None:
    """Issue 18: the kernel wrote `Infinity`, `NaN` or `1e999` into the stage. Now the items whose value is not a
    finite JSON number fail (failures file, exit 3) and stay as they were; the others are updated; emit gives
    JSON that a strict parser reads."""
    before = raw_items(stage)
    p = _cli(stage, "update", "--where", "true", "--set", f"properties.x={expr}")
    assert p.returncode == 3, p.stderr
    assert "2 item(s) failed and were left as they were" in p.stderr and "Traceback" not in p.stderr
    assert "item 'i1': field properties.x" in p.stderr and "not a finite JSON number" in p.stderr
    after = raw_items(stage)
    for key, text in after.items():
        if key[1] in ("i1", "i2"):
            assert text == before[key]  # byte for byte
        else:
            assert '"x":1' in text or '"x":[1' in text
    summary = stacbatch.open_stage(stage).manifest.last_run
    assert summary is not None and summary["failed"] == 2 and summary["changed"] == 10
    out = tmp_path / "out.ndjson"
    p = _cli(stage, "emit", "-f", "ndjson", "-o", str(out), "--single-file")
    assert p.returncode == 0, p.stderr

    def refuse(token: str) -> None:
        raise AssertionError(token)

    import json

    lines = out.read_text().splitlines()
    assert len(lines) == 12
    for line in lines:
        json.loads(line, parse_constant=refuse)
        assert "1e999" not in line


def test_unchanged_means_canonically_equal() -> None:
    """The Python path tells unchanged items as the kernel does (the canonical stream): 1 and 1.0 are the same
    number, an integer beyond int64 and the float nearest it are not, and true is not 1."""
    from stacbatch.edit._rewrite import _same

    assert _same(1, 1.0) and _same([1], [1.0])
    assert not _same(10**19, 1e19) and not _same([10**19], [1e19])
    assert not _same(True, 1)
