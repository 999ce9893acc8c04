"""Regression tests for the sharp edges of issue 18 that live in the stage, the loader and the CLI's plumbing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from helpers import cli as run
from helpers import collection, item, write_ndjson

import stacbatch


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_sql_output_appends_to_a_redirected_file(tmp_path: Path, tmp_stage: str, fmt: str) -> None:
    """`COPY TO '/dev/stdout'` reopened the file behind stdout at offset 0: what came before was overwritten."""
    stacbatch.load_to_stage(tmp_stage, [str(write_ndjson(tmp_path / "a.ndjson", [item("a"), item("b")]))])
    out = tmp_path / "out.txt"
    out.write_text("existing line\n")
    query = "SELECT id FROM items ORDER BY id"
    script = f'echo header; "{sys.executable}" -m stacbatch sql --stage "{tmp_stage}" -f {fmt} "{query}"; echo trailer'
    subprocess.run(["bash", "-c", f"{{ {script}; }} >> '{out}'"], check=True, timeout=120)
    lines = out.read_text().splitlines()
    body = ["id", "a", "b"] if fmt == "csv" else ['{"id":"a"}', '{"id":"b"}']
    assert lines == ["existing line", "header", *body, "trailer"]


def test_sql_output_into_a_closed_pipe_ends(tmp_path: Path, tmp_stage: str) -> None:
    items = [item(f"i{n:05d}") for n in range(3000)]
    stacbatch.load_to_stage(tmp_stage, [str(write_ndjson(tmp_path / "a.ndjson", items))])
    query = "SELECT * FROM items, range(20)"
    proc = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m stacbatch sql --stage "{tmp_stage}" -f json "{query}" | head -c 10'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert len(proc.stdout) == 10
    assert "Traceback" not in proc.stderr


def _staged(stage: str) -> list[tuple[str, str, str]]:
    con = stacbatch.open_stage(stage).connection
    rows = con.sql("SELECT collection, id, item FROM items ORDER BY collection, id").fetchall()
    return [(c, i, t) for c, i, t in rows]


@pytest.mark.parametrize("kernel_on", [True, False], ids=["kernel", "python"])
def test_collection_keys_are_exact_or_the_item_fails(
    tmp_path: Path, tmp_stage: str, monkeypatch: pytest.MonkeyPatch, kernel_on: bool
) -> None:
    """A NUL in a collection id was cut off in the partition key (one item superseded another); a literal
    `_no_collection` collided with the items that have none."""
    from stacbatch.kernel import _scan

    monkeypatch.setattr(_scan, "AVAILABLE", kernel_on)
    src = write_ndjson(
        tmp_path / "a.ndjson",
        [item("a", "c1"), item("a", "c1\x00x"), item("b", None), item("b", "_no_collection"), item("c", "c1\x00")],
    )
    res = stacbatch.load_to_stage(tmp_stage, [str(src)], workers=1)
    assert res.failed == 1 and res.staged == 4
    keys = [(c, i) for c, i, _ in _staged(tmp_stage)]
    assert keys == [("_no_collection", "b"), ("c1", "a"), ("c1\x00", "c"), ("c1\x00x", "a")]
    failures = [orjson.loads(line) for line in Path(res.failures_file).read_bytes().splitlines()]
    assert [(f["line"], f["field"]) for f in failures] == [(4, "collection")]
    assert "reserved" in failures[0]["reason"]


def test_long_collection_ids_do_not_sink_the_load(tmp_path: Path, tmp_stage: str) -> None:
    """33 CJK characters (297 bytes encoded) were "File name too long": 0 of 101 items staged."""
    long_ids = ["地" * 33, "地" * 300, "x" * 5000, "地" * 300 + "y"]
    items = [item(f"i{n}") for n in range(100)] + [item("long", c) for c in long_ids]
    colls = tmp_path / "colls"
    colls.mkdir()
    for n, cid in enumerate(long_ids):
        (colls / f"{n}.json").write_bytes(orjson.dumps(collection(cid)))
    res = stacbatch.load_to_stage(tmp_stage, [str(write_ndjson(tmp_path / "a.ndjson", items)), str(colls)])
    assert res.failed == 0 and res.staged == 104 and res.collections_staged == 4
    staged = {c for c, _i, _t in _staged(tmp_stage)}
    assert staged == {"c1", *long_ids}
    names = [p.name for p in Path(tmp_stage).rglob("*")]
    assert max(len(n.encode()) for n in names) <= 255
    con = stacbatch.open_stage(tmp_stage).connection
    assert sorted(r[0] for r in con.sql("SELECT id FROM collections WHERE id <> 'c1'").fetchall()) == sorted(long_ids)
    out = tmp_path / "out.ndjson"
    assert run("emit", "--stage", tmp_stage, "-f", "ndjson", "--to", str(out)).returncode == 0
    assert sorted(orjson.loads(line)["collection"] for line in out.read_bytes().splitlines())[-4:] == sorted(long_ids)


def test_non_finite_numbers_fail_their_item_on_every_file_path(tmp_path: Path, tmp_stage: str) -> None:
    """NaN/Infinity/1e999 were accepted (exit 0) and re-serialised as invalid JSON: now each is an item failure
    naming the field, and the rest of the file is staged (a FeatureCollection, a stac-geoparquet file, a
    Collection)."""
    import pyarrow.parquet as pq
    from stac_geoparquet.arrow import parse_stac_items_to_arrow

    fc = tmp_path / "fc.json"
    fc.write_bytes(
        b'{"type":"FeatureCollection","features":['
        + orjson.dumps(item("ok"))
        + b',{"type":"Feature","id":"bad","collection":"c1","geometry":null,"properties":{"datetime":null,"x":NaN},'
        b'"links":[],"assets":{}}]}'
    )
    good, bad = item("pq-ok", **{"properties": {"datetime": "2021-01-01T00:00:00Z", "x": 1.5}}), item("pq-bad")
    bad["properties"]["x"] = float("inf")
    table = parse_stac_items_to_arrow([good, bad]).read_all()
    pq.write_table(table, tmp_path / "items.parquet")
    coll = collection("c1")
    (tmp_path / "coll.json").write_text(orjson.dumps(coll).decode().replace('"license"', '"x":-Infinity,"license"'))
    res = stacbatch.load_to_stage(tmp_stage, [str(fc), str(tmp_path / "items.parquet"), str(tmp_path / "coll.json")])
    assert res.staged == 2 and res.failed == 3
    failures = [orjson.loads(line) for line in Path(res.failures_file).read_bytes().splitlines()]
    assert sorted(f.get("id", "") + ":" + f["field"] for f in failures) == [
        "bad:properties.x",
        "c1:x",
        "pq-bad:properties.x",
    ]
    out = tmp_path / "out.ndjson"
    assert run("emit", "--stage", tmp_stage, "-f", "ndjson", "--to", str(out)).returncode == 0
    assert sorted(orjson.loads(line)["id"] for line in out.read_bytes().splitlines()) == ["ok", "pq-ok"]


def _load(stage: str, tmp_path: Path, name: str, items: list[dict[str, object]]) -> None:
    res = stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / name, items))])
    assert res.failed == 0


def test_a_snapshot_reads_on_while_a_writer_replaces_its_files(tmp_path: Path, tmp_stage: str) -> None:
    """A Stage opened before another commit failed every query after it (the writer deleted the files it read)."""
    _load(tmp_stage, tmp_path, "v1.ndjson", [item(f"i{n}", platform="one") for n in range(50)])
    old = stacbatch.open_stage(tmp_stage)
    assert old.sql("SELECT count(*) FROM items").fetchall() == [(50,)]
    v1_files = set(old.file_paths())
    _load(tmp_stage, tmp_path, "v2.ndjson", [item(f"i{n}", platform="two") for n in range(50)])
    assert not v1_files & set(stacbatch.open_stage(tmp_stage).file_paths())  # every v1 file was replaced
    query = "SELECT DISTINCT item->>'platform' FROM items"
    assert old.sql(query).fetchall() == [("one",)] and old.version == 1
    assert old.newer_version() == 2
    assert old.refresh().sql(query).fetchall() == [("two",)] and old.version == 2
    retired = orjson.loads((Path(tmp_stage) / "manifest.json").read_bytes())["retired"]
    assert {r["version"] for r in retired} == {1} and len(retired) >= len(v1_files)


def test_replaced_files_go_once_their_retention_is_over(tmp_path: Path, tmp_stage: str) -> None:
    from stacbatch.stage._manifest import read_manifest, write_manifest

    _load(tmp_stage, tmp_path, "v1.ndjson", [item(f"i{n}") for n in range(5)])
    fs_root = Path(tmp_stage)
    m = read_manifest(__import__("fsspec").filesystem("file"), str(fs_root))
    assert m is not None
    m.settings["retain_replaced_seconds"] = 0
    write_manifest(__import__("fsspec").filesystem("file"), str(fs_root), m)
    old = stacbatch.open_stage(tmp_stage)
    _load(tmp_stage, tmp_path, "v2.ndjson", [item(f"i{n}", x=1) for n in range(5)])
    _load(tmp_stage, tmp_path, "v3.ndjson", [item(f"i{n}", x=2) for n in range(5)])
    assert not any(Path(p).exists() for p in old.file_paths())
    on_disk = {str(p.relative_to(fs_root)) for p in (fs_root / "items").rglob("*.parquet")}
    assert on_disk == {f["path"] for f in stacbatch.open_stage(tmp_stage).manifest.files}


def test_sql_in_a_loop_never_fails_while_a_writer_commits(tmp_path: Path, tmp_stage: str) -> None:
    """`stacbatch sql` in a loop during writes failed about 1 time in 20 (`Cannot open file ...parquet`)."""
    import threading

    _load(tmp_stage, tmp_path, "v0.ndjson", [item(f"i{n}") for n in range(200)])
    stop = threading.Event()
    errors: list[str] = []

    def write() -> None:
        n = 0
        while not stop.is_set() and n < 40:
            n += 1
            _load(tmp_stage, tmp_path, f"w{n}.ndjson", [item(f"i{k}", n=n) for k in range(200)])

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for _ in range(12):
            proc = run("sql", "--stage", tmp_stage, "-f", "csv", "SELECT count(*) AS n FROM items")
            if proc.returncode != 0 or proc.stdout.split() != ["n", "200"]:
                errors.append(proc.stderr or proc.stdout)
    finally:
        stop.set()
        writer.join()
    assert errors == []


def test_a_stage_path_that_is_a_file_is_a_stage_error(tmp_path: Path) -> None:
    from stacbatch.errors import ExitCode

    (tmp_path / "afile").write_text("x")
    src = write_ndjson(tmp_path / "a.ndjson", [item("a")])
    for args in (["load", str(src)], ["info"], ["sql", "SELECT 1"]):
        proc = run(*args, "--stage", str(tmp_path / "afile"))
        assert proc.returncode == ExitCode.STAGE, (args, proc.stderr)
        assert "is a file, not a stage folder" in proc.stderr and "Traceback" not in proc.stderr


def test_loading_a_folder_that_holds_the_stage_leaves_the_stage_out(tmp_path: Path) -> None:
    """`load data/ --stage data/stage` read the stage's own Parquet files as sources on the second load."""
    data = tmp_path / "data"
    write_ndjson(data / "a.ndjson", [item("a"), item("b")])
    stage = str(data / "stage")
    first = stacbatch.load_to_stage(stage, [str(data)])
    assert (first.read, first.failed) == (2, 0)
    again = stacbatch.load_to_stage(stage, [str(data)])
    assert (again.read, again.failed, again.staged) == (2, 0, 2)
    assert again.skipped_stages == [str(data / "stage")]
    assert [k for _c, k, _t in _staged(stage)] == ["a", "b"]


@pytest.mark.parametrize("fmt", ["table", "csv"])
def test_ctrl_c_during_a_query_is_an_interrupt_not_a_bug(tmp_path: Path, tmp_stage: str, fmt: str) -> None:
    """SIGINT during a DuckDB query exited 70 ("internal error"), or went unnoticed while DuckDB held the thread."""
    import signal
    import time

    items = [item(f"i{n}") for n in range(20000)]
    stacbatch.load_to_stage(tmp_stage, [str(write_ndjson(tmp_path / "a.ndjson", items))])
    query = "SELECT count(*) FROM items a, items b, items c WHERE a.item->>'id' < b.item->>'id'"
    proc = subprocess.Popen(
        [sys.executable, "-m", "stacbatch", "sql", "--stage", tmp_stage, "-f", fmt, query],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(5)  # past the imports, inside the query (it would run for hours)
    proc.send_signal(signal.SIGINT)
    try:
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["stacbatch: interrupted; the stage is unchanged unless a commit was reported"]


def _helpers_of(pid: int) -> list[int]:
    """Processes whose environment names ``pid`` as their stacbatch main process (fork server, workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"STACBATCH_MAIN_PID={pid}\0".encode() in env:
            found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_a_killed_load_leaves_no_processes_and_the_next_write_clears_its_leftovers(
    tmp_path: Path, tmp_stage: str
) -> None:
    """After kill -9 the fork server and workers lived on (holding /dev/shm/sem.mp-*), `_tmp` survived update and
    delete, and `runs/<id>/` without summary.json was never closed."""
    import signal
    import time

    stacbatch.load_to_stage(tmp_stage, [str(write_ndjson(tmp_path / "a.ndjson", [item("first")]))])
    big = write_ndjson(tmp_path / "big.ndjson", [item(f"i{n}", title="x" * 200) for n in range(150_000)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "stacbatch", "-q", "load", str(big), "--stage", tmp_stage, "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not _helpers_of(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    helpers = _helpers_of(proc.pid)
    assert helpers, "the load ended before its workers started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _helpers_of(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _helpers_of(proc.pid) == []
    (Path(tmp_stage) / "manifest.json.tmp-99999").write_text("{")  # as a write that met ENOSPC leaves it
    res = subprocess.run(
        [sys.executable, "-m", "stacbatch", "delete", "--stage", tmp_stage, "--where", "id = 'first'"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert not (Path(tmp_stage) / "_tmp").exists()
    assert not list(Path(tmp_stage).glob("manifest.json.tmp-*"))
    assert all((run / "summary.json").exists() for run in (Path(tmp_stage) / "runs").iterdir() if run.is_dir())


def test_integers_beyond_64_bits_stay_exact_through_json_documents_and_the_tree_emit(
    tmp_path: Path, tmp_stage: str
) -> None:
    """orjson 3 reads an integer beyond 64 bits as a float, silently: a FeatureCollection or Collection file, and the
    JSON tree emit, turned 123456789012345678901234567890 into 1.2345678901234568e+29."""
    import json

    big = 123456789012345678901234567890
    doc = item("big", properties={"datetime": "2021-01-01T00:00:00Z", "n": big, "id": "9" * 25, "f": 1.0})
    (tmp_path / "fc.json").write_text(json.dumps({"type": "FeatureCollection", "features": [doc]}))
    (tmp_path / "coll.json").write_text(json.dumps(collection("c1", count=-big)))
    res = stacbatch.load_to_stage(tmp_stage, [str(tmp_path / "fc.json"), str(tmp_path / "coll.json")])
    assert res.failed == 0
    (text,) = [t for _c, _i, t in _staged(tmp_stage)]
    assert json.loads(text)["properties"] == doc["properties"]
    out = tmp_path / "tree"
    proc = run("emit", "--stage", tmp_stage, "-f", "json", "--to", str(out))
    assert proc.returncode == 0, proc.stderr
    emitted = json.loads((out / "c1" / "big" / "big.json").read_text())
    assert emitted["properties"] == doc["properties"] and type(emitted["properties"]["f"]) is float
    assert json.loads((out / "c1" / "collection.json").read_text())["count"] == -big
