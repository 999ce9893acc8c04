"""diff and merge: invariants on generated stages (hypothesis), change sets, modes, CLI."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest
from conftest import canon
from helpers import cli as _cli
from helpers import item, write_ndjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stacbatch
from stacbatch.edit import delete, parse_cli_ops, update
from stacbatch.edit._diff import diff
from stacbatch.edit._merge import merge

_counter = itertools.count()


def content(stage: str) -> dict[tuple[str, str], Any]:
    s = stacbatch.open_stage(stage)
    rows = s.sql("SELECT collection, id, content_hash, item FROM items").fetchall()
    return {(c, i): (h, canon(orjson.loads(j))) for c, i, h, j in rows}


def make_stage(base: Path, items: list[dict[str, Any]]) -> str:
    n = next(_counter)
    path = base / f"s{n}"
    src = write_ndjson(base / f"s{n}.ndjson", items)
    stacbatch.load_to_stage(str(path), [str(src)], workers=1)
    return str(path)


_value = st.one_of(st.integers(-5, 5), st.sampled_from(["a", "b", None, 1.5]))
_props = st.dictionaries(st.sampled_from(["p", "q", "eo:cloud_cover"]), _value, max_size=3)
_items = st.dictionaries(
    st.tuples(st.sampled_from(["c1", "c2"]), st.sampled_from([f"i{n}" for n in range(8)])), _props, max_size=10
)


def build(spec: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    return [item(i, collection=c, properties={"datetime": "2020-01-01T00:00:00Z", **p}) for (c, i), p in spec.items()]


SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


@SETTINGS
@given(spec=_items)
def test_diff_of_a_stage_with_itself_is_empty(tmp_path: Path, spec: dict[tuple[str, str], dict[str, Any]]) -> None:
    a = make_stage(tmp_path, build(spec))
    res = diff(a, a)
    assert not res.differs
    assert res.totals()["unchanged"] == len(spec)


@SETTINGS
@given(a_spec=_items, b_spec=_items)
def test_merging_the_diff_gives_the_other_stage(
    tmp_path: Path, a_spec: dict[tuple[str, str], dict[str, Any]], b_spec: dict[tuple[str, str], dict[str, Any]]
) -> None:
    a = make_stage(tmp_path, build(a_spec))
    b = make_stage(tmp_path, build(b_spec))
    cs = str(tmp_path / f"cs{next(_counter)}.parquet")
    res = diff(a, b, out=cs)
    t = res.totals()
    assert t["added"] == len(b_spec.keys() - a_spec.keys())
    assert t["deleted"] == len(a_spec.keys() - b_spec.keys())
    assert t["modified"] == sum(1 for k in a_spec.keys() & b_spec.keys() if canon(a_spec[k]) != canon(b_spec[k]))
    merged = merge(a, cs, mode="mirror")
    assert (merged.inserted, merged.replaced, merged.deleted) == (t["added"], t["modified"], t["deleted"])
    assert content(a) == content(b)
    assert not diff(a, b).differs


@SETTINGS
@given(spec=_items.filter(bool), data=st.data())
def test_update_then_diff_reports_exactly_the_updated(
    tmp_path: Path, spec: dict[tuple[str, str], dict[str, Any]], data: st.DataObject
) -> None:
    a = make_stage(tmp_path, build(spec))
    b = str(tmp_path / f"copy{next(_counter)}")
    shutil.copytree(a, b)
    chosen = data.draw(st.sets(st.sampled_from(sorted(spec)), min_size=1))
    where = " OR ".join(f"(collection = '{c}' AND id = '{i}')" for c, i in sorted(chosen))
    res = update(b, parse_cli_ops(["properties.q='new'"], [], []), where=where)
    really = {k for k in chosen if spec[k].get("q") != "new"}
    assert res.changed == len(really)
    cs = str(tmp_path / f"cs{next(_counter)}.parquet")
    d = diff(a, b, out=cs)
    assert d.totals()["modified"] == len(really) and not d.totals()["added"] and not d.totals()["deleted"]
    rows = pq.read_table(cs).to_pylist() if really else []
    assert {(r["collection"], r["id"]) for r in rows} == really
    for r in rows:
        assert sorted(r["paths"]) == ["properties.q", "properties.updated"]
    # ignoring what the update touched: no differences
    assert not diff(a, b, ignore=["properties.q", "properties.updated"]).differs


@SETTINGS
@given(spec=_items.filter(bool), data=st.data())
def test_delete_then_diff_reports_exactly_the_deleted(
    tmp_path: Path, spec: dict[tuple[str, str], dict[str, Any]], data: st.DataObject
) -> None:
    a = make_stage(tmp_path, build(spec))
    b = str(tmp_path / f"copy{next(_counter)}")
    shutil.copytree(a, b)
    chosen = data.draw(st.sets(st.sampled_from(sorted(spec)), min_size=1))
    ids = tmp_path / f"ids{next(_counter)}.ndjson"
    ids.write_bytes(b"".join(orjson.dumps({"collection": c, "id": i}) + b"\n" for c, i in sorted(chosen)))
    assert delete(b, ids_file=str(ids)).changed == len(chosen)
    cs = str(tmp_path / f"cs{next(_counter)}.parquet")
    d = diff(a, b, out=cs)
    assert d.totals() == {"added": 0, "deleted": len(chosen), "modified": 0, "unchanged": len(spec) - len(chosen)}
    assert {(r["collection"], r["id"]) for r in pq.read_table(cs).to_pylist()} == chosen
    tomb = stacbatch.open_stage(b).sql("SELECT collection, id FROM tombstones").fetchall()
    assert set(tomb) == chosen


def test_merge_modes_from_a_stage(tmp_path: Path) -> None:
    a_items = [item(f"a{n}", properties={"datetime": "2020-01-01T00:00:00Z", "v": 1}) for n in range(5)]
    b_items = [item(f"a{n}", properties={"datetime": "2020-01-01T00:00:00Z", "v": 2}) for n in range(2, 7)]
    for mode, want in [
        ("insert-only", {"a0": 1, "a1": 1, "a2": 1, "a3": 1, "a4": 1, "a5": 2, "a6": 2}),
        ("upsert", {"a0": 1, "a1": 1, "a2": 2, "a3": 2, "a4": 2, "a5": 2, "a6": 2}),
        ("mirror", {"a2": 2, "a3": 2, "a4": 2, "a5": 2, "a6": 2}),
    ]:
        a = make_stage(tmp_path, a_items)
        b = make_stage(tmp_path, b_items)
        res = merge(a, b, mode=mode)
        s = stacbatch.open_stage(a)
        vs = dict(s.sql("SELECT id, (properties->>'v')::INT FROM items").fetchall())
        assert vs == want, mode
        assert res.inserted == 2
        assert res.replaced == (0 if mode == "insert-only" else 3)
        assert res.deleted == (2 if mode == "mirror" else 0)


def test_diff_against_files_and_ndjson_changes(tmp_path: Path) -> None:
    items = [item(f"a{n}") for n in range(4)]
    a = make_stage(tmp_path, items)
    changed = [*items[:3], item("new")]
    changed[0] = item("a0", title="retitled")
    src = write_ndjson(tmp_path / "next.ndjson", changed)
    nd = tmp_path / "changes.ndjson"
    res = diff(a, str(src), ndjson=str(nd))
    assert res.totals() == {"added": 1, "deleted": 1, "modified": 1, "unchanged": 2}
    lines = [orjson.loads(x) for x in nd.read_bytes().splitlines()]
    kinds = {r["id"]: r["kind"] for r in lines}
    assert kinds == {"a0": "modified", "a3": "deleted", "new": "added"}
    mod = next(r for r in lines if r["id"] == "a0")
    assert mod["paths"] == ["title"] and mod["item"]["title"] == "retitled"


def test_cli_diff_exit_code_and_merge(tmp_path: Path) -> None:
    a = make_stage(tmp_path, [item("x"), item("y")])
    b = make_stage(tmp_path, [item("x"), item("z")])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stacbatch", *args], capture_output=True, text=True, timeout=120)

    p = run("diff", a, a, "--exit-code")
    assert p.returncode == 0 and "total" in p.stdout
    cs = str(tmp_path / "cs.parquet")
    p = run("diff", a, b, "--exit-code", "--out", cs)
    assert p.returncode == 1
    assert "c1" in p.stdout and "1 added, 1 deleted" in p.stderr
    p = run("merge", cs, "--stage", a, "--mode", "mirror")
    assert p.returncode == 0, p.stderr
    assert run("diff", a, b, "--exit-code").returncode == 0
    p = run("merge", cs, "--stage", a, "--mode", "sideways")
    assert p.returncode == 4 and "--mode must be one of" in p.stderr
    p = run("diff", a, str(tmp_path / "missing"))
    assert p.returncode == 4 and p.stderr.count("\n") == 1


def test_change_set_files_appear_only_when_complete(tmp_path: Path) -> None:
    from stacbatch.engine import _fs

    fs, _ = _fs.filesystem(str(tmp_path))
    target = tmp_path / "changes.parquet"
    with pytest.raises(RuntimeError), _fs.atomic_sink(fs, str(target)) as f:
        f.write(b"half a file")
        raise RuntimeError("killed mid-write")
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary file is left
    with _fs.atomic_sink(fs, str(target)) as f:
        f.write(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def _many(n: int, version: int, every: int = 1) -> list[dict[str, Any]]:
    """Items big enough to span many pages, over two collections and several years (several files each)."""
    return [
        item(
            f"i{k:05d}",
            collection=f"c{k % 2}",
            dt=f"{2015 + k % 4}-0{1 + k % 9}-01T00:00:00Z",
            properties={"datetime": f"{2015 + k % 4}-0{1 + k % 9}-01T00:00:00Z", "v": version if k % every == 0 else 0},
            description="x" * (k % 700),
            geometry=None if k % 13 == 0 else {"type": "Point", "coordinates": [k % 180, k % 90]},
            bbox=None if k % 13 == 0 else [k % 180, k % 90, k % 180, k % 90],
        )
        for k in range(n)
    ]


@pytest.mark.parametrize("budget", [None, 0])
def test_change_set_read_by_place_equals_the_sql_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, budget: int | None
) -> None:
    """The change set read page by page (the default) and through the SQL join (forced with a zero text budget)
    are the same file, with the item text exactly as staged and B's query columns."""
    a = make_stage(tmp_path, _many(1500, 1))
    b_items = [it for it in _many(1600, 2, every=37) if not it["id"].endswith("3")]
    b = make_stage(tmp_path, b_items)
    cs = tmp_path / "cs.parquet"
    from stacbatch.edit import _changes, _diff

    if budget is not None:
        monkeypatch.setattr(_changes, "TEXT_BUDGET", budget)
    paths: list[bool] = []  # which way each change set was read: True by place, False through the SQL join

    def spy(*args: Any, **kwargs: Any) -> Any:
        got = _changes.located_change_table(*args, **kwargs)
        paths.append(got is not None)
        return got

    monkeypatch.setattr(_diff, "located_change_table", spy)
    res = diff(a, b, out=str(cs))
    assert paths == [budget is None]
    got = pq.read_table(cs)
    assert got.num_rows == res.changes_written == sum(v for k, v in res.totals().items() if k != "unchanged")
    staged = (
        stacbatch.open_stage(b)
        .sql(
            "SELECT collection, id, datetime, start_datetime, end_datetime, bbox, geometry, item::VARCHAR AS item "
            "FROM items"
        )
        .to_arrow_table()
    )
    by_key = {(r["collection"], r["id"]): r for r in staged.to_pylist()}
    rows = got.to_pylist()
    assert [(r["collection"], r["id"]) for r in rows] == sorted((r["collection"], r["id"]) for r in rows)
    for r in rows:
        if r["kind"] == "deleted":
            assert r["item"] is None and r["geometry"] is None
            continue
        want = by_key[(r["collection"], r["id"])]
        assert r["item"] == want["item"]
        for c in ("datetime", "start_datetime", "end_datetime", "bbox", "geometry"):
            assert r[c] == want[c], c
        if r["kind"] == "modified":
            assert r["paths"] == ["properties.v"]


def test_diff_out_when_one_side_is_empty(tmp_path: Path) -> None:
    a = make_stage(tmp_path, [item("x"), item("y")])
    empty = str(tmp_path / "empty")
    stacbatch.load_to_stage(empty, [str(write_ndjson(tmp_path / "none.ndjson", []))], workers=1)
    for left, right, kind in ((a, empty, "deleted"), (empty, a, "added")):
        cs = tmp_path / f"{kind}.parquet"
        res = diff(left, right, out=str(cs))
        assert res.totals()[kind] == 2
        assert pq.read_table(cs).column("kind").to_pylist() == [kind, kind]


def test_duckdb_numbers_files_in_list_order(tmp_path: Path) -> None:
    """The places diff reads rows from rely on DuckDB's file_index being the position in the file list."""
    import duckdb

    from stacbatch.edit._changes import _places_hold

    s = stacbatch.open_stage(make_stage(tmp_path, [item(f"i{k}", collection=f"c{k}") for k in range(6)]))
    paths = s.file_paths()
    assert len(paths) > 4
    con = duckdb.connect()
    assert _places_hold(con, paths) and _places_hold(con, paths[::-1])


def test_cli_diff_out_of_one_collection_with_modified_items(tmp_path: Path) -> None:
    """Issue 18: `diff -c C --out` read the modified rows of C at their places in another collection's file
    (DuckDB numbered the files left after pruning C's partition folder from 0): an IndexError, or wrong rows."""
    a_items = [item(f"a{n}", collection="c0") for n in range(3)] + [
        item(f"b{n:02d}", collection="c1") for n in range(12)
    ]
    b_items = [{**it, "title": "changed"} for it in a_items]
    a, b = make_stage(tmp_path, a_items), make_stage(tmp_path, b_items)
    cs = tmp_path / "c1.parquet"
    p = _cli("diff", a, b, "-c", "c1", "--out", str(cs))
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr and "0 added, 0 deleted, 12 modified" in p.stderr
    rows = pq.read_table(cs).to_pylist()
    assert [(r["collection"], r["id"], r["kind"]) for r in rows] == [("c1", f"b{n:02d}", "modified") for n in range(12)]
    want = {it["id"]: canon(it) for it in b_items}
    assert all(canon(orjson.loads(r["item"])) == want[r["id"]] and r["paths"] == ["title"] for r in rows)


_three = st.dictionaries(
    st.tuples(st.sampled_from(["c0", "c1", "c2"]), st.sampled_from([f"i{n}" for n in range(6)])),
    _props,
    max_size=14,
)
_ignorable = ["properties.p", "properties.q", 'properties."eo:cloud_cover"']


@SETTINGS
@given(
    a_spec=_three,
    b_spec=_three,
    chosen=st.lists(st.sampled_from(["c0", "c1", "c2", "nope"]), min_size=1, max_size=3, unique=True),
    ignore=st.lists(st.sampled_from(_ignorable), max_size=2, unique=True),
    by_place=st.booleans(),
)
def test_diff_out_of_a_selection_is_the_full_diff_filtered(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    a_spec: dict[tuple[str, str], dict[str, Any]],
    b_spec: dict[tuple[str, str], dict[str, Any]],
    chosen: list[str],
    ignore: list[str],
    by_place: bool,
) -> None:
    """Every selection option (-c, --ignore, both) writes the change set a full diff gives for the selection, read
    by place or through the SQL join; counts agree."""
    from stacbatch.edit import _changes

    monkeypatch.setattr(_changes, "TEXT_BUDGET", 1 << 30 if by_place else 0)
    a = make_stage(tmp_path, build(a_spec))
    b = make_stage(tmp_path, build(b_spec))
    full_cs, sel_cs = (str(tmp_path / f"{n}{next(_counter)}.parquet") for n in ("full", "sel"))
    full = diff(a, b, out=full_cs, ignore=ignore)
    sel = diff(a, b, out=sel_cs, ignore=ignore, collections=chosen)
    assert sel.counts == {c: n for c, n in full.counts.items() if c in chosen}
    want = [r for r in pq.read_table(full_cs).to_pylist() if r["collection"] in chosen]
    got = pq.read_table(sel_cs).to_pylist()
    assert got == want
    assert sel.changes_written == len(got)
    kept = {c: n for c, n in sel.counts.items()}
    assert sum(n["added"] + n["deleted"] + n["modified"] for n in kept.values()) == len(got)
