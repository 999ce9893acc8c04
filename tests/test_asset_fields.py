"""The asset_fields column (issue 19): per item a map of asset key -> (href, type, roles), derived from the text on
every write, read from the text for files written before it, and what ``stacbatch upgrade`` adds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import CORPUS, corpus_files, needs_shared
from helpers import write_ndjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_columns import disagreements

import stacbatch
from stacbatch.edit import parse_cli_ops, update
from stacbatch.stage._assets import asset_fields, from_text
from stacbatch.stage._stage import open_stage
from stacbatch.stage._upgrade import upgrade

CORPUS_FILES = corpus_files("items")


def reference(doc: Any) -> dict[str, Any]:
    """asset_fields as its docstring defines it, from a decoded item."""
    assets = doc.get("assets") if isinstance(doc, dict) else None
    out: dict[str, Any] = {}
    if not isinstance(assets, dict):
        return out
    for key, value in assets.items():
        if not isinstance(value, dict):
            continue
        roles = value.get("roles")
        out[key] = {
            "href": value["href"] if isinstance(value.get("href"), str) else None,
            "type": value["type"] if isinstance(value.get("type"), str) else None,
            "roles": roles if isinstance(roles, list) and all(r is None or isinstance(r, str) for r in roles) else None,
        }
    return out


def as_assets(value: Any) -> dict[str, Any]:
    """A value of the column (three maps with the same keys) as asset key -> its fields."""
    href, typ, roles = (dict(value[f]) for f in ("href", "type", "roles"))
    assert href.keys() == typ.keys() == roles.keys()
    return {k: {"href": href[k], "type": typ[k], "roles": roles[k]} for k in href}


def _column(texts: list[str]) -> list[dict[str, Any]]:
    col, _ = asset_fields(pa.chunked_array([pa.array(texts, pa.string())]))
    return [as_assets(m) for m in col.to_pylist()]


def _python(texts: list[str], monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The column without the C kernel (an install without a compiler)."""
    from stacbatch.stage import _assets, _columns

    with monkeypatch.context() as m:
        m.setattr(_assets, "_kernel", None)
        m.setattr(_columns, "_kernel", None)
        return _column(texts)


def _sql(texts: list[str]) -> list[dict[str, Any]]:
    import duckdb

    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT unnest(?) AS n, unnest(?)::JSON AS item", [list(range(len(texts))), texts])
    return [as_assets(r[0]) for r in con.execute(f"SELECT {from_text()} FROM t ORDER BY n").fetchall()]


def test_definition_on_awkward_assets(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [
        '{"assets": {"a": {"href": 1, "roles": ["x", null]}, "b": 3, "c": {"type": "image/tiff", "roles": [1]}}}',
        '{"id": "no assets"}',
        '{"assets": []}',
        '{"assets": {}}',
        '{"assets": {"x": {"roles": []}, "y": null, "é ü/.~": {"href": "s3://b/k"}}}',
        '{"assets": {"a": {"href": "h", "href": "last"}}}',
    ]
    got = _column(texts)
    assert got == [reference(orjson.loads(t)) for t in texts]
    assert got[0] == {
        "a": {"href": None, "type": None, "roles": ["x", None]},
        "c": {"href": None, "type": "image/tiff", "roles": None},
    }
    assert got[1] == got[2] == got[3] == {}  # never NULL: empty maps
    assert got[5] == {"a": {"href": "last", "type": None, "roles": None}}
    assert _sql(texts[:5]) == got[:5]  # (duplicate members inside one asset: the column takes the last)
    assert _python(texts, monkeypatch) == got
    # a row the kernel leaves to Python (nested past its limit) sends the batch through the generic reader
    deep = '{"assets": {"a": {"href": "h", "x": ' + "[" * 600 + "]" * 600 + "}}}"
    assert _column([*texts, deep]) == [*got, {"a": {"href": "h", "type": None, "roles": None}}]
    _, report = asset_fields(pa.chunked_array([pa.array(texts)]))
    assert report == {"items": 3, "misses": {"href": 1, "roles": 1}}


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=5))
_ROLES = st.one_of(_SCALARS, st.lists(st.one_of(st.none(), st.text(max_size=4), st.integers()), max_size=3))
_ASSET = st.one_of(
    _SCALARS,
    st.fixed_dictionaries({}, optional={"href": _SCALARS, "type": _SCALARS, "roles": _ROLES, "title": _SCALARS}),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.none(), st.dictionaries(st.text(min_size=1, max_size=6), _ASSET, max_size=4)), max_size=8))
def test_any_assets_give_what_the_definition_says(all_assets: list[Any]) -> None:
    docs = [{"id": str(i)} if a is None else {"id": str(i), "assets": a} for i, a in enumerate(all_assets)]
    texts = [json.dumps(d) for d in docs]  # integers beyond 64 bits included
    want = [reference(d) for d in docs]
    assert _column(texts) == want
    assert _sql(texts) == want
    with pytest.MonkeyPatch.context() as m:
        assert _python(texts, m) == want


@needs_shared
@pytest.mark.parametrize("batch_size", [1, 2, None])
def test_real_items_filter_on_assets_at_parquet_speed(tmp_path: Path, batch_size: int | None) -> None:
    stage = str(tmp_path / "s")
    kw = {"batch_size": batch_size} if batch_size else {}
    stacbatch.load_to_stage(stage, [str(p) for p in CORPUS_FILES], workers=1, **kw)
    with open_stage(stage) as s:
        by_column = s.sql(
            "SELECT id FROM items WHERE list_contains(asset_fields.roles['visual'], 'visual') ORDER BY ALL"
        ).fetchall()
        by_text = s.sql(
            "SELECT id FROM items WHERE list_contains(CAST(json_extract(item, '$.assets.visual.roles') AS VARCHAR[]),"
            " 'visual') ORDER BY ALL"
        ).fetchall()
        assert by_column == by_text and by_column
        cogs = s.sql(
            "SELECT count(*) FROM items WHERE len(list_filter(map_values(asset_fields.type), lambda t: "
            "t LIKE 'image/tiff; application=geotiff%')) > 0"
        ).fetchall()
        assert cogs[0][0] > 0
        import polars as pl

        ids = s.scan().filter(pl.col("asset_fields").is_not_null()).select("id").collect()
        assert len(ids) == s.sql("SELECT count(*) FROM items").fetchall()[0][0]
        roles = pl.col("asset_fields").struct.field("roles").map.get("visual")  # as docs/queryables.md shows
        polars_ids = s.scan().filter(roles.list.contains("visual")).select("id").sort("id").collect()["id"].to_list()
        assert polars_ids == [r[0] for r in by_column]
    # (agreement with the text on the corpus: test_columns' corpus tests, whose check covers asset_fields)


def _item(i: int, assets: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": f"i{i}",
        "collection": "c",
        "geometry": {"type": "Point", "coordinates": [i, 0]},
        "bbox": [i, 0, i, 0],
        "properties": {"datetime": "2021-01-01T00:00:00Z"},
        "links": [],
        "assets": assets,
    }


def test_update_where_selects_by_asset_fields_and_keeps_them_in_agreement(tmp_path: Path) -> None:
    stage = str(tmp_path / "s")
    items = [_item(i, {"B04": {"href": f"s3://b/{i}.tif", "type": "image/tiff"}} if i % 2 else {}) for i in range(8)]
    stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "a.ndjson", items))], workers=1)
    res = update(
        stage, parse_cli_ops(["assets.B04.roles=['data']"], [], []), where="asset_fields.href['B04'] IS NOT NULL"
    )
    assert res.selected == res.changed == 4
    with open_stage(stage) as s:
        rows = s.sql("SELECT id, asset_fields.roles['B04'] FROM items ORDER BY id").fetchall()
    assert rows == [(f"i{i}", ["data"] if i % 2 else None) for i in range(8)]
    assert disagreements(stage) == {}


def test_files_written_before_the_column_read_it_from_the_text_until_upgraded(tmp_path: Path) -> None:
    stage = tmp_path / "s"
    items = [_item(i, {"a": {"href": f"h{i}", "roles": ["data"]}}) for i in range(5)]
    stacbatch.load_to_stage(str(stage), [str(write_ndjson(tmp_path / "a.ndjson", items))], workers=1)
    doc = json.loads((stage / "manifest.json").read_text())
    for f in doc["files"]:  # as the previous release wrote them: no column, no report
        path = stage / f["path"]
        pq.write_table(pq.read_table(path).drop_columns(["asset_fields"]), path)
        f["columns"].pop("assets")
        f["bytes"] = path.stat().st_size
    (stage / "manifest.json").write_text(json.dumps(doc))
    with open_stage(str(stage)) as s:
        got = s.sql("SELECT id, asset_fields FROM items ORDER BY id").fetchall()
        assert [(i, as_assets(m)) for i, m in got] == [
            (f"i{i}", {"a": {"href": f"h{i}", "type": None, "roles": ["data"]}}) for i in range(5)
        ]
    res = upgrade(str(stage))
    assert res.files == 1 and res.items == 5
    with open_stage(str(stage)) as s:
        assert all("assets" in f["columns"] for f in s.manifest.files)
        assert s.sql("SELECT asset_fields FROM items ORDER BY id").fetchall() == [(m,) for _, m in got]
    assert upgrade(str(stage)).files == 0
    assert disagreements(str(stage)) == {}


# ---- the kernel on untrusted bytes: every row it reads is one orjson reads, with the fields the definition gives


def _kernel_check(texts: list[bytes]) -> None:
    import numpy as np

    from stacbatch.stage import _assets

    if _assets._kernel is None:
        pytest.skip("no kernel")
    off = np.zeros(len(texts) + 1, np.int32)
    off[1:] = np.cumsum([len(t) for t in texts])
    got = _assets._kernel.asset_fields(off, b"".join(texts))
    assert len(got) == 17
    unread = set(np.frombuffer(got[16], np.int32).tolist())
    readable = []
    for i, t in enumerate(texts):
        try:
            doc = orjson.loads(t)
        except orjson.JSONDecodeError:
            assert i in unread, t
            continue
        assert i not in unread, t  # (nothing here nests past the kernel's limit)
        readable.append((t, doc))
    if readable:
        col = _assets._kernel_fields(pa.array([t.decode() for t, _ in readable]))
        assert col is not None
        assert [as_assets(v) for v in col[0].to_pylist()] == [reference(d) for _, d in readable]


_LINES = [
    line
    for f in CORPUS_FILES
    if str(f).endswith(".ndjson")
    for line in f.read_bytes().split(b"\n")
    if b'"assets"' in line
][:200]
_STRUCTURAL = b'{}[]":,\\ 0123456789-.eE+tfnu\x00\x1f\x7f\x80\xbf\xc3\xed\xf0\xff'


@needs_shared
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 3), st.sampled_from(list(_STRUCTURAL))),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_real_items(muts: list[tuple[int, int, int, int]]) -> None:
    texts = []
    for i, at, op, byte in muts:
        line = _LINES[i % len(_LINES)]
        at %= len(line) + 1
        texts.append(
            [line[:at], line[:at] + bytes([byte]) + line[at + 1 :], line[:at] + bytes([byte]) + line[at:]][op]
            if op < 3
            else line[:at] + line[at + 1 :]
        )
    _kernel_check(texts)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet='{}[]":,\\ 01-.eE+tfnrulhefyproasp\t\n', max_size=60), max_size=6))
def test_random_json_like_text(texts: list[str]) -> None:
    _kernel_check([('{"assets":' + t + "}").encode() for t in texts] + [t.encode() for t in texts])


def test_every_real_item_by_the_kernel() -> None:
    if not _LINES:
        pytest.skip(f"needs the shared corpus: {CORPUS} is missing")
    _kernel_check(_LINES)
