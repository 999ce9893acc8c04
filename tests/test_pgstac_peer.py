"""STAC API ingestion from a real peer: stac-fastapi-pgstac over PostgreSQL + pgstac on 127.0.0.1, loaded by pypgstac.

The items loaded are the real corpus items pgstac accepts (a collection, a datetime or a range, a geometry) plus a
synthetic collection; what stacbatch stages must equal them under canonical JSON equality apart from ``links``, which
the API rewrites.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import canon, corpus_files, shared_path
from helpers import cli, collection, item
from pgstac_peer import PgstacPeer, missing

import stacbatch

SYNTH = "peer-synthetic"
Key = tuple[str, str]


def _accepted_by_pgstac(doc: dict[str, Any]) -> bool:
    props = doc.get("properties") or {}
    has_time = props.get("datetime") or (props.get("start_datetime") and props.get("end_datetime"))
    return bool(doc.get("collection") and has_time and doc.get("geometry"))


def _synthetic(n: int) -> list[dict[str, Any]]:
    start = datetime.datetime(2022, 1, 1, tzinfo=datetime.UTC)
    out = []
    for i in range(n):
        when = start + datetime.timedelta(hours=3 * i, microseconds=123456)
        lon = -170 + (i % 340)
        out.append(
            item(
                f"S{i:05d}",
                collection=SYNTH,
                dt=when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "7Z",  # 7 fractional digits must survive
                geometry={"type": "Point", "coordinates": [lon + 0.5, 10.25, 3.0]},
                bbox=[lon + 0.5, 10.25, 3.0, lon + 0.5, 10.25, 3.0],
                properties={
                    "datetime": when.strftime("%Y-%m-%dT%H:%M:%S.%f") + "7Z",
                    "eo:cloud_cover": i % 101,
                    "empty": {},
                    "none": None,
                },
            )
        )
    return out


def _instant(value: str | dict[str, Any]) -> datetime.datetime:
    text = value if isinstance(value, str) else value["properties"]["datetime"]
    return datetime.datetime.fromisoformat(text[:26].rstrip("Z") + "+00:00")  # 7th fractional digit dropped


@pytest.fixture(scope="module")
def peer() -> Iterator[tuple[PgstacPeer, dict[Key, dict[str, Any]]]]:
    why = missing()
    if why:
        if os.environ.get("STACBATCH_REQUIRE_PEERS"):
            pytest.fail(why)
        pytest.skip(why)
    shared_path("corpus", "real", "items")  # skips (CI: fails) without the shared corpus
    loaded: dict[Key, dict[str, Any]] = {}
    for path in corpus_files("items"):
        for line in path.read_bytes().splitlines():
            doc = orjson.loads(line)
            if _accepted_by_pgstac(doc):
                loaded[(doc["collection"], doc["id"])] = doc  # last wins, as upsert does
    for doc in _synthetic(2000):
        loaded[(SYNTH, doc["id"])] = doc
    collections = [collection(c) for c in sorted({c for c, _ in loaded})]
    srv = PgstacPeer().start()
    try:
        srv.load(collections, loaded.values())
        yield srv, loaded
    finally:
        srv.stop()


def staged(stage: str) -> dict[Key, dict[str, Any]]:
    rows = stacbatch.open_stage(stage).sql("SELECT collection, id, item FROM items").fetchall()
    assert len(rows) == len({(c, i) for c, i, _ in rows})
    return {(c, i): orjson.loads(j) for c, i, j in rows}


def without_links(doc: dict[str, Any]) -> Any:
    return canon({k: v for k, v in doc.items() if k != "links"})


def assert_same(got: dict[Key, dict[str, Any]], want: dict[Key, dict[str, Any]]) -> None:
    assert set(got) == set(want)
    differing = [k for k in want if without_links(got[k]) != without_links(want[k])]
    assert not differing, f"{len(differing)} items differ, e.g. {differing[:3]}"


def test_load_fetches_every_item_equal_to_what_pypgstac_loaded(peer: Any, tmp_path: Path) -> None:
    srv, loaded = peer
    stage = str(tmp_path / "stage")
    done = cli("load", srv.base, "--stage", stage, "--concurrency", "8")
    assert done.returncode == 0, done.stderr
    assert len(loaded) > 3000
    assert_same(staged(stage), loaded)
    # the API's own links, not invented ones; collections came along
    got = staged(stage)[(SYNTH, "S00000")]
    assert any(link["rel"] == "self" and link["href"].startswith(srv.base) for link in got["links"])
    cols = stacbatch.open_stage(stage).sql("SELECT id FROM collections").fetchall()
    assert {c for (c,) in cols} == {c for c, _ in loaded}


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_filtered_windowed_load_equals_the_matching_items(peer: Any, tmp_path: Path, method: str) -> None:
    srv, loaded = peer
    stage = str(tmp_path / "stage")
    lo, hi = "2022-02-01T00:00:00Z", "2022-05-01T00:00:00Z"
    done = cli(
        *("load", srv.base, "--stage", stage, "--collection", "peer-*", "--datetime", f"{lo}/{hi}"),
        *("--windows", "5", "--method", method, "--concurrency", "4"),
    )
    assert done.returncode == 0, done.stderr
    want = {k: v for k, v in loaded.items() if k[0] == SYNTH and _instant(lo) <= _instant(v) <= _instant(hi)}
    assert 500 < len(want) < 2000
    assert_same(staged(stage), want)


def test_discover_lists_the_peers_collections(peer: Any) -> None:
    srv, _ = peer
    done = cli("discover", srv.base, "--format", "ndjson", "--collection", "peer-*")
    assert done.returncode == 0, done.stderr
    rows = [orjson.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert [r["id"] for r in rows] == [SYNTH]
