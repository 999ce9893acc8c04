"""The partition writer keeps memory bounded for a partition far larger than a file: it sorts groups of spills."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import canon
from helpers import collection, item, write_ndjson

import stacbatch
from stacbatch.sources import _detect
from stacbatch.stage import _manifest, load


def test_a_partition_larger_than_four_files_is_written_in_sorted_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_detect, "CHUNK_BYTES", 5_000)  # many units, so many spill files (one per unit)
    settings = {**_manifest.DEFAULT_SETTINGS, "file_max_bytes": 60_000, "file_max_rows": 1_000}
    monkeypatch.setattr(_manifest, "DEFAULT_SETTINGS", settings)
    # one collection, one year: a single partition of ~1 MB of item text (the files hold ~60 KB each)
    docs: list[dict[str, Any]] = [
        item(f"i{n:05d}", dt=f"2021-{1 + (n * 7) % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:00:00Z", props={"n": n})
        for n in range(3000)
    ]
    src = write_ndjson(tmp_path / "in.ndjson", docs)
    stage = str(tmp_path / "stage")
    res = load(stage, [str(src)], workers=1)
    assert res.staged == 3000 and res.failed == 0
    st = stacbatch.open_stage(stage)
    got = {i: orjson.loads(j) for i, j in st.sql("SELECT id, item FROM items").fetchall()}
    assert got.keys() == {d["id"] for d in docs}
    assert all(canon(got[d["id"]]) == canon(d) for d in docs)
    files = [Path(stage) / f["path"] for f in st.manifest.files]
    names = {p.name.split("-")[-1][:3] for p in files}
    assert len(names) > 1  # several sort groups were written
    for path in files:  # each file is sorted by datetime
        times = pq.ParquetFile(path).read(columns=["datetime"]).column(0).to_pylist()
        assert times == sorted(times)


@pytest.mark.parametrize("collide", [False, True])
def test_last_wins_whether_or_not_id_hashes_collide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collide: bool
) -> None:
    """A first load skips the duplicates query when the writer's id hashes are distinct; equal hashes (a true
    duplicate or a collision) send it to the exact query. Both give the same stage."""
    from stacbatch.stage import _files

    if collide:  # every id hashes alike: the exact path must still find the one real duplicate and nothing else
        monkeypatch.setattr(_files, "string_hashes", lambda ids: __import__("numpy").zeros(len(ids), "uint64"))
    docs = [item(f"d{n}", collection=f"c{n % 2}", dt=f"20{10 + n % 5}-01-01T00:00:00Z") for n in range(40)]
    docs.append(item("d3", collection="c1", dt="2030-01-01T00:00:00Z", props={"v": 2}))  # d3 again, later wins
    stage = str(tmp_path / "stage")
    res = load(stage, [str(write_ndjson(tmp_path / "in.ndjson", docs))], workers=1)
    assert (res.staged, res.duplicates, res.replaced) == (40, 1, 0)
    st = stacbatch.open_stage(stage)
    assert st.sql("SELECT count(*) FROM items").fetchall() == [(40,)]
    (text,) = st.sql("SELECT item FROM items WHERE id = 'd3'").fetchall()[0]
    assert orjson.loads(text)["props"] == {"v": 2}


def test_string_hashes_are_stable_over_slices_and_chunks() -> None:
    import numpy as np
    import pyarrow as pa

    from stacbatch.kernel import _scan

    if not _scan.AVAILABLE:
        pytest.skip("needs the C kernel")
    arr = pa.array(["a", "b", "", "a", "ünï", "b"])
    whole = _scan.string_hashes(pa.chunked_array([arr]))
    parts = _scan.string_hashes(pa.chunked_array([arr.slice(0, 2), arr.slice(2)]))
    assert whole is not None and parts is not None and np.array_equal(whole, parts)
    assert whole[0] == whole[3] and whole[1] == whole[5] and len(set(whole.tolist())) == 4
    empty = _scan.string_hashes(pa.chunked_array([], pa.string()))
    assert empty is not None and len(empty) == 0


def test_audit_of_a_first_load_comes_from_the_writers_and_matches_the_items(tmp_path: Path) -> None:
    """A first load with distinct ids takes its insert audit rows from the partition writers (no query); a later
    load that replaces items goes through the query. Either way the audit names every staged row once."""
    docs = [item(f"a{n}", collection=f"c{n % 3}", dt=f"20{10 + n % 4}-03-01T00:00:00Z") for n in range(30)]
    stage = str(tmp_path / "stage")
    # c0 is known to the stage (its Collection) but has no items yet: still a first load of its items
    (tmp_path / "c0.json").write_bytes(orjson.dumps(collection("c0")))
    load(stage, [str(tmp_path / "c0.json")], workers=1)
    load(stage, [str(write_ndjson(tmp_path / "a.ndjson", docs))], workers=1)
    st = stacbatch.open_stage(stage)
    rows = st.sql(
        "SELECT a.operation, a.collection, a.id, a.hash_after = i.content_hash, a.hash_before IS NULL "
        "FROM audit a JOIN items i USING (collection, id) ORDER BY a.id"
    ).fetchall()
    assert len(rows) == 30 and all(r[0] == "insert" and r[3] and r[4] for r in rows)
    changed = [item("a1", collection="c1", dt="2011-03-01T00:00:00Z", props={"v": 1})]
    res = load(stage, [str(write_ndjson(tmp_path / "b.ndjson", changed))], workers=1)
    assert res.replaced == 1
    st = stacbatch.open_stage(stage)
    ops = st.sql("SELECT operation, count(*) FROM audit GROUP BY ALL ORDER BY ALL")
    assert ops.fetchall() == [("insert", 30), ("replace", 1)]
    # one audit file per run (the first from the writers' keys, the second from the query), none that the
    # manifest does not name
    assert {str(p.relative_to(stage)) for p in Path(stage, "audit").iterdir()} == {e["path"] for e in st.manifest.audit}
    assert [e["rows"] for e in st.manifest.audit] == [30, 1]


def test_a_large_audit_log_is_written_as_two_files_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stacbatch.stage import _audit

    monkeypatch.setattr(_audit, "SPLIT_ROWS", 10)
    monkeypatch.setattr(_audit, "default_workers", lambda: 2)
    docs = [item(f"a{n:02d}", dt=f"20{10 + n % 4}-03-01T00:00:00Z") for n in range(25)]
    stage = str(tmp_path / "stage")
    load(stage, [str(write_ndjson(tmp_path / "a.ndjson", docs))], workers=1)
    st = stacbatch.open_stage(stage)
    entries = st.manifest.audit
    assert [e["rows"] for e in entries] == [13, 12] and len({e["run"] for e in entries}) == 1
    assert {str(p.relative_to(stage)) for p in Path(stage, "audit").iterdir()} == {e["path"] for e in entries}
    # the view reads both, in order, each staged row once
    rows = st.sql("SELECT a.id, a.hash_after = i.content_hash FROM audit a JOIN items i USING (collection, id)")
    got = rows.fetchall()
    assert sorted(r[0] for r in got) == sorted(d["id"] for d in docs) and all(r[1] for r in got)
    # a later run adds its own file beside them
    load(stage, [str(write_ndjson(tmp_path / "b.ndjson", [item("b", dt="2012-01-01T00:00:00Z")]))], workers=1)
    st = stacbatch.open_stage(stage)
    assert [e["rows"] for e in st.manifest.audit] == [13, 12, 1]
    assert st.sql("SELECT count(*) FROM audit").fetchall() == [(26,)]


@pytest.mark.parametrize("workers", [1, 2])
def test_workers_write_large_partitions_themselves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """A unit's rows for a partition that fill a quarter of a file are written as stage files by the worker, when
    the collection's scheme is settled (staged already, or enough rows in the unit); the rest is spilled and
    gathered. Either way: every row staged once, each file sorted, the audit names every row, last wins."""
    monkeypatch.setattr(_detect, "CHUNK_BYTES", 60_000)  # units of ~100 items
    settings = {**_manifest.DEFAULT_SETTINGS, "file_max_rows": 40, "time_bucket_min_items": 30}
    monkeypatch.setattr(_manifest, "DEFAULT_SETTINGS", settings)
    big = [
        item(f"b{n:04d}", collection="big", dt=f"20{10 + n % 3}-{1 + n % 12:02d}-01T00:00:00Z", props={"n": n})
        for n in range(600)
    ]
    small = [item(f"s{n}", collection="small", dt=f"20{10 + n}-01-01T00:00:00Z") for n in range(5)]
    docs = [d for pair in zip(big[:5], small, strict=True) for d in pair] + big[5:]
    stage = str(tmp_path / "stage")
    res = load(stage, [str(write_ndjson(tmp_path / "in.ndjson", docs))], workers=workers)
    assert (res.staged, res.new, res.failed) == (605, 605, 0)
    st = stacbatch.open_stage(stage)
    files = [Path(stage) / f["path"] for f in st.manifest.files]
    assert any("-u0" in p.name for p in files), "no partition was written by a worker"
    assert any("-u0" not in p.name for p in files), "no partition was gathered from spills"
    assert st.manifest.collections["small"]["partitioning"] == "none"  # too few rows: one partition
    assert st.manifest.collections["big"]["partitioning"] == "year"
    assert {str(p.relative_to(stage)) for p in Path(stage, "items").rglob("*.parquet")} == {
        f["path"] for f in st.manifest.files
    }
    for path in files:
        times = pq.ParquetFile(path).read(columns=["datetime"]).column(0).to_pylist()
        assert times == sorted(times)
    got = {i: orjson.loads(j) for i, j in st.sql("SELECT id, item FROM items").fetchall()}
    assert len(got) == 605 and all(canon(got[d["id"]]) == canon(d) for d in docs)
    audit = st.sql("SELECT operation, count(DISTINCT id), count(*) FROM audit GROUP BY ALL").fetchall()
    assert audit == [("insert", 605, 605)]
    # a second load of a staged collection: written by workers too, and it replaces
    again = [item(f"b{n:04d}", collection="big", dt="2012-06-01T00:00:00Z", props={"v": 2}) for n in range(0, 600, 2)]
    res = load(stage, [str(write_ndjson(tmp_path / "again.ndjson", again))], workers=workers)
    assert (res.staged, res.replaced, res.new) == (300, 300, 0)
    st = stacbatch.open_stage(stage)
    assert st.sql("SELECT count(*), count(DISTINCT id) FROM items").fetchall() == [(605, 605)]
    got = {i: orjson.loads(j) for i, j in st.sql("SELECT id, item FROM items WHERE collection = 'big'").fetchall()}
    assert all(canon(got[d["id"]]) == canon(d) for d in again)
    assert sum(1 for d in got.values() if "v" in d["props"]) == 300


def test_rows_for_a_collection_written_early_are_refused_not_lost(tmp_path: Path) -> None:
    import pytest

    from stacbatch.errors import StageError
    from stacbatch.stage._parse import Spill
    from stacbatch.stage._writer import PartitionWriter

    writer = PartitionWriter(None, str(tmp_path), "r1", {"time_bucket": "none"}, {}, str(tmp_path))
    writer.write_early(["c"])  # nothing spilled for it yet: nothing to write, but it is closed
    with pytest.raises(StageError, match="came after it was written"):
        writer.add_parts([("c", None, Spill(str(tmp_path / "x.arrow"), 0, 1, 1, 1))])
    writer.add_parts([("d", None, Spill(str(tmp_path / "x.arrow"), 0, 1, 1, 1))])  # other collections go on


def test_time_buckets_read_as_arrow_strftime_writes_them() -> None:
    """Routing formats each distinct bucket once (numpy), not each row (Arrow's strftime): same text, years
    0001-9999 before and after 1970, undated rows "unknown"."""
    import numpy as np
    import pyarrow.compute as pc

    from stacbatch.stage._route import _bucket_text

    rng = np.random.default_rng(1)
    edges = [0, -1, 1, -86_400_000_000, 946_684_799_999_999, 946_684_800_000_000]
    values = [*rng.integers(-62135596800000000, 253402300799999999, 5000).tolist(), *edges]
    values = [None if i % 11 == 3 else v for i, v in enumerate(values)]
    arr = pa.array(values, pa.timestamp("us", "UTC"))
    t = pa.chunked_array([arr.slice(0, 2000), arr.slice(2000)])
    for scheme, fmt in (("year", "%Y"), ("month", "%Y-%m")):
        want = pc.fill_null(pc.strftime(t, format=fmt), "unknown").to_pylist()
        assert _bucket_text(t, scheme).to_pylist() == want
