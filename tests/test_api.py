"""STAC API ingestion against a fault-injecting, CMR-STAC-like server on 127.0.0.1."""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import canon
from helpers import cli, item
from stac_server import FakeStac

import stacbatch
from stacbatch.api import ApiOptions
from stacbatch.api._options import AUTO_LIMIT
from stacbatch.stage import load


def catalog(n_coll: int = 3, per: int = 230) -> dict[str, list[dict[str, Any]]]:
    # two items a day at the same instant (window boundaries hit some), 7-digit fractions as CMR-STAC has them
    return {
        f"C{c}_1.0": [
            item(
                f"G{c}.{i:05d}",
                collection=f"C{c}_1.0",
                properties={"datetime": f"{_day(i // 2)}T10:00:00.1234567Z", "n": i},
            )
            for i in range(per)
        ]
        for c in range(n_coll)
    }


def _day(n: int) -> str:
    return (datetime.date(2021, 1, 1) + datetime.timedelta(days=n)).isoformat()


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[FakeStac]:
    kwargs = getattr(request, "param", {})
    srv = FakeStac(catalog(), **kwargs)
    srv.start()
    yield srv
    srv.stop()


def staged(stage: str) -> dict[tuple[str, str], Any]:
    rows = stacbatch.open_stage(stage).sql("SELECT collection, id, item FROM items").fetchall()
    return {(c, i): orjson.loads(j) for c, i, j in rows}


@pytest.mark.parametrize(
    "server",
    [
        {"fault_every": 3, "fault_cycle": (500, 502, 503, 504, 429), "retry_after": "0"},
        {"fault_every": 4, "search": False},  # /collections/{id}/items only: items carry just a self link
    ],
    indirect=True,
    ids=["search-with-faults", "items-endpoint"],
)
def test_every_item_staged_exactly_once(server: FakeStac, tmp_path: Path) -> None:
    stage = str(tmp_path / "stage")
    res = load(stage, [server.base], api=ApiOptions(concurrency=4, limit=30))
    assert res.failed == 0 and res.api.retries > 0
    assert res.api.queries > len(server.items)  # each collection's time range was split into windows
    got = staged(stage)
    want = {(c, f["id"]): f for c, feats in server.items.items() for f in feats}
    assert got.keys() == want.keys() and res.staged == len(want)  # none missing, none twice
    for key, doc in got.items():
        expected = dict(want[key])
        if not server.search_enabled:
            assert [ln["rel"] for ln in doc["links"]] == ["self"]
            doc = {k: v for k, v in doc.items() if k != "links"}
            expected.pop("links")
        assert canon(doc) == canon(expected)  # datetime strings and all, as served
    assert sorted(stacbatch.open_stage(stage).manifest.collections) == sorted(server.items)
    # POST search, then GET-only next links with bracketed parameters, as CMR-STAC sends them
    if server.search_enabled:
        methods = {m for _t, m, p, s in server.log if p.startswith("/stac/PROV/search")}
        assert methods == {"POST", "GET"}
        assert any("collections%5B0%5D" in p for _t, _m, p, _s in server.log)


@pytest.mark.parametrize("server", [{"fault_every": 2, "fault_cycle": (429,), "retry_after": "1"}], indirect=True)
def test_retry_after_is_honoured(server: FakeStac, tmp_path: Path) -> None:
    res = load(str(tmp_path / "s"), [server.base], api=ApiOptions(collections=["C0_1.0"], concurrency=1))
    assert res.failed == 0 and res.staged == 230
    log = server.log
    for n, (t, _m, _p, status) in enumerate(log[:-1]):
        if status == 429:
            assert log[n + 1][0] - t >= 0.95  # the next request waited for Retry-After


@pytest.mark.parametrize("server", [{"latency": 0.2}], indirect=True)
@pytest.mark.parametrize("concurrency", [1, 4])
def test_collections_are_asked_with_the_landing_page_unless_one_at_a_time(
    server: FakeStac, tmp_path: Path, concurrency: int
) -> None:
    res = load(str(tmp_path / "s"), [server.base], api=ApiOptions(collections=["C0_1.0"], concurrency=concurrency))
    assert res.staged == 230
    landing, colls = server.log[0], server.log[1]
    assert landing[2] == "/stac/PROV" and colls[2].startswith("/stac/PROV/collections")
    assert sum(1 for e in server.log if e[2] == colls[2]) == 1  # the early answer was used, not asked again
    # the server answers a request no sooner than 0.2 s after it arrives: a request for /collections that arrives
    # within 0.2 s of the landing page's was sent before the client could have read that answer
    if concurrency == 1:
        assert colls[0] - landing[0] >= 0.2
    else:
        assert colls[0] - landing[0] < 0.2


@pytest.mark.parametrize("server", [{"latency": 0.02}], indirect=True)
def test_collections_finished_are_written_while_others_are_fetched(
    server: FakeStac, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stacbatch.stage._writer import PartitionWriter

    early: list[tuple[str, ...]] = []
    real = PartitionWriter.write_early

    def spy(self: PartitionWriter, collections: tuple[str, ...]) -> None:
        early.append(tuple(collections))
        real(self, collections)

    monkeypatch.setattr(PartitionWriter, "write_early", spy)
    stage = str(tmp_path / "s")
    res = load(stage, [server.base], api=ApiOptions(concurrency=2, limit=20, windows=3))
    assert res.failed == 0 and res.staged == 690 and res.duplicates == 0
    assert sorted(c for call in early for c in call) == sorted(server.items)  # each once, when it was complete
    got = staged(stage)
    assert got.keys() == {(c, f["id"]) for c, fs in server.items.items() for f in fs}
    assert all(canon(got[(c, f["id"])]) == canon(f) for c, fs in server.items.items() for f in fs)
    # with a second source in the same load, a collection may get rows after its API queries end: no early writes
    early.clear()
    extra = tmp_path / "extra.ndjson"
    extra.write_bytes(orjson.dumps(item("late", collection="C0_1.0")) + b"\n")
    res = load(str(tmp_path / "s2"), [server.base, str(extra)], api=ApiOptions(concurrency=2, limit=20))
    assert res.staged == 691 and early == []


@pytest.mark.parametrize("server", [{}], indirect=True)
def test_rate_limit_is_never_exceeded(server: FakeStac, tmp_path: Path) -> None:
    rate = 8.0
    res = load(str(tmp_path / "s"), [server.base], api=ApiOptions(concurrency=8, limit=20, rate_limit=rate))
    starts = res.api.request_starts
    assert res.staged == 690 and len(starts) > 3 * rate
    for t in starts:  # in any one-second window, at most `rate` requests started
        assert sum(1 for u in starts if t <= u < t + 1.0) <= rate
    served = [t for t, *_ in server.log]
    for t in served:  # and the server saw no more (one of slack for network jitter)
        assert sum(1 for u in served if t <= u < t + 1.0) <= rate + 1


@pytest.mark.parametrize("server", [{"broken": ("C1_1.0",)}], indirect=True)
def test_a_failing_query_is_recorded_and_the_rest_goes_on(server: FakeStac, tmp_path: Path) -> None:
    stage = str(tmp_path / "stage")
    p = cli(
        "load",
        server.base,
        "--stage",
        stage,
        "--max-retries",
        "1",
        "-H",
        "Authorization: Bearer ${API_TOKEN}",
        env={"API_TOKEN": "s3cr3t-t0ken"},
    )
    assert p.returncode == 3, p.stderr
    assert {c for c, _ in staged(stage)} == {"C0_1.0", "C2_1.0"}
    run_dir = next(Path(stage, "runs").iterdir())
    recs = [orjson.loads(x) for x in (run_dir / "failures.ndjson").read_bytes().splitlines()]
    assert recs  # one per time window of the broken collection, each with what it asked
    for rec in recs:
        assert rec["collection"] == "C1_1.0" and rec["status"] == 500 and rec["request"]["method"] == "POST"
        assert "Oops" in rec["reason"] and "after 1 retries" in rec["reason"]
        assert rec["request"]["body"]["collections"] == ["C1_1.0"]
    assert len({r["request"]["body"].get("datetime") for r in recs}) == len(recs)
    for text in (p.stdout, p.stderr, (run_dir / "failures.ndjson").read_text(), (run_dir / "summary.json").read_text()):
        assert "s3cr3t" not in text


def test_max_items_and_filters_are_sent(server: FakeStac, tmp_path: Path) -> None:
    res = load(
        str(tmp_path / "s"),
        [server.base],
        api=ApiOptions(
            collections=["C2*"], max_items=120, bbox=[-10.0, -10.0, 10.0, 10.0], datetime="2021-01-01T00:00:00Z/.."
        ),
    )
    assert res.staged == 120
    bodies = [orjson.loads(b) for b in server.posts]
    # no --limit: a large page is asked for (the server caps it at 100, as CMR-STAC does)
    assert bodies and all(b["collections"] == ["C2_1.0"] and b["limit"] == AUTO_LIMIT for b in bodies)
    assert all(b["bbox"] == [-10.0, -10.0, 10.0, 10.0] for b in bodies)
    # the windows stay inside the asked interval: each starts at or after its start; only the last is open-ended
    windows = sorted({b["datetime"] for b in bodies})
    assert windows[0].startswith("2021-01-01T00:00:00Z/")
    assert all(w.split("/")[0] >= "2021-01-01T00:00:00Z" for w in windows)
    assert sum(w.endswith("/..") for w in windows) <= 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--collection", "NOPE_1"], "no such collection"),
        (["--bbox", "1,2,3"], "expected 4 (or 6) numbers"),
        (["--bbox", "0,80,10,70"], "out of range"),
        (["--datetime", "yesterday"], "not an RFC 3339 datetime"),
        (["--header", "X-Key: ${NO_SUCH_VAR_HERE}"], "NO_SUCH_VAR_HERE is not set"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    server: FakeStac, tmp_path: Path, args: list[str], message: str
) -> None:
    stage = tmp_path / "stage"
    p = cli("load", server.base, "--stage", str(stage), *args)
    assert p.returncode == 4 and message in p.stderr and p.stderr.count("\n") == 1, p.stderr
    assert not stage.exists()


def test_unreachable_and_non_stac_urls(tmp_path: Path, server: FakeStac) -> None:
    stage = tmp_path / "stage"
    p = cli("load", "http://127.0.0.1:9/stac", "--stage", str(stage), "--max-retries", "0")
    assert p.returncode == 4 and "not reachable" in p.stderr and p.stderr.count("\n") == 1
    p = cli("load", f"{server.base}/collections/C0_1.0/items", "--stage", str(stage))
    assert p.returncode == 4 and "not a STAC API" in p.stderr
    assert not stage.exists()


def test_discover_lists_filters_and_stores(server: FakeStac, tmp_path: Path) -> None:
    root = f"http://127.0.0.1:{server.port}/stac"
    p = cli("discover", root, "--format", "ndjson", "--collection", "C1*", "--collection", "C2_1.0")
    assert p.returncode == 0, p.stderr
    assert [orjson.loads(x)["id"] for x in p.stdout.splitlines()] == ["C1_1.0", "C2_1.0"]
    p = cli("discover", root, "--provider", "OTHER", "-f", "json")
    assert p.returncode == 0 and orjson.loads(p.stdout) == []
    stage = str(tmp_path / "stage")
    p = cli("discover", server.base, "--stage", stage)
    assert p.returncode == 0 and "C0_1.0" in p.stdout
    assert sorted(stacbatch.open_stage(stage).manifest.collections) == ["C0_1.0", "C1_1.0", "C2_1.0"]


@pytest.mark.parametrize("server", [{"broken": ("C1_1.0",)}], indirect=True)
def test_retry_failed_fetches_just_the_failed_queries(server: FakeStac, tmp_path: Path) -> None:
    stage = str(tmp_path / "stage")
    p = cli("load", server.base, "--stage", stage, "--max-retries", "0")
    assert p.returncode == 3
    run_id = stacbatch.open_stage(stage).manifest.last_run["run_id"]  # type: ignore[index]
    failed = len((Path(stage) / "runs" / run_id / "failures.ndjson").read_bytes().splitlines())
    server.broken = ()  # the server recovered
    before = len(server.log)
    p = cli("load", "--retry-failed", run_id, "--stage", stage)
    assert p.returncode == 0, p.stderr
    got = staged(stage)
    assert len(got) == sum(len(v) for v in server.items.values())
    again = [x for x in server.log[before:] if x[2].startswith("/stac/PROV/search")]
    # only C1's failed window queries were asked again (one POST each, then their GET next links); C0 and C2 were
    # not fetched a second time
    assert len([x for x in again if x[1] == "POST"]) == failed
    assert all("C1_1.0" in path for _t, method, path, _s in again if method == "GET")
    p = cli("load", "--retry-failed", "no-such-run", "--stage", stage)
    assert p.returncode == 4 and "no such run" in p.stderr


@pytest.mark.parametrize("server", [{"latency": 0.05}], indirect=True)
def test_killed_load_resumes_where_it_stopped(server: FakeStac, tmp_path: Path) -> None:
    """Kill a load after its first checkpoint; --resume stages the rest: every item once, finished work not asked
    for again."""
    import signal
    import time

    stage = tmp_path / "stage"
    args = ["--stage", str(stage), "--checkpoint-every", "200", "--concurrency", "2", "--windows", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "stacbatch", "-q", "load", server.base, *args],
        stderr=subprocess.DEVNULL,
    )
    checkpoint = stage / "runs" / "api-checkpoint.json"
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert checkpoint.exists()
    pending = orjson.loads(checkpoint.read_bytes())["pending"]
    done_before = stacbatch.open_stage(str(stage)).manifest.item_count()
    total = sum(len(v) for v in server.items.values())
    assert 0 < done_before < total
    before, posts_before = len(server.log), len(server.posts)
    p = cli("load", "--resume", *args)
    assert p.returncode == 0, p.stderr
    assert len(staged(str(stage))) == total and stacbatch.open_stage(str(stage)).manifest.item_count() == total
    assert not checkpoint.exists()  # finished: nothing left to resume
    # the resumed run went on from the checkpoint's requests: no query finished before the kill was asked again
    # (each query starts with a POST of its window; GET next links carry the server's cursor)
    key = lambda b: orjson.dumps(b, option=orjson.OPT_SORT_KEYS).decode()  # noqa: E731
    pending_posts = {key(p["request"]["body"]) for p in pending if p["request"]["method"] == "POST"}
    assert set(server.posts[posts_before:]) <= pending_posts
    gets = [path for _t, m, path, _s in server.log[before:] if m == "GET" and path.startswith("/stac/PROV/search")]
    assert all("cursor=" in path for path in gets)
    p = cli("load", "--resume", "--stage", str(stage))
    assert p.returncode == 4 and "no interrupted API load" in p.stderr


def _skewed() -> dict[str, list[dict[str, Any]]]:
    """A burst (300 items within an hour), 40 items at one instant, and 30 spread over a year: even time windows
    cannot balance this; counts can."""
    feats = [
        item(f"B{i:04d}", collection="SKEW", properties={"datetime": f"2021-03-01T10:{i // 5:02d}:{i % 5:02d}.5Z"})
        for i in range(300)
    ]
    feats += [item(f"I{i:03d}", collection="SKEW", properties={"datetime": "2021-06-01T00:00:00Z"}) for i in range(40)]
    feats += [
        item(f"Y{i:03d}", collection="SKEW", properties={"datetime": f"{_day(12 * i)}T00:00:00Z"}) for i in range(30)
    ]
    return {"SKEW": feats}


@pytest.mark.parametrize("search", [True, False], ids=["search", "items-endpoint"])
def test_windows_split_by_count_stage_every_item_once(tmp_path: Path, search: bool) -> None:
    srv = FakeStac(_skewed(), fault_every=7, retry_after="0", search=search)
    srv.start()
    try:
        stage = str(tmp_path / "stage")
        res = load(stage, [srv.base], api=ApiOptions(concurrency=4, limit=20, windows=1, window_pages=2))
        assert res.failed == 0 and res.api.failed_queries == 0
        assert res.api.splits >= 2  # the year, then the burst within it; the 40 at one instant cannot be cut
        got = staged(stage)
        want = {("SKEW", f["id"]): f for f in srv.items["SKEW"]}
        assert got.keys() == want.keys() and res.staged == len(want) and res.duplicates == 0
        assert all(canon(got[k]) == canon(want[k]) for k in want if search)
        # every request served a page that was taken, or the first page of a window that was split
        assert res.api.requests - res.api.retries == res.api.pages + res.api.splits
    finally:
        srv.stop()


def test_checkpoints_across_split_windows_stage_every_item_once(tmp_path: Path) -> None:
    """Commit every ~40 items while windows split: a split window's parts replace it in the same step, so each
    segment goes on from exactly what is left; nothing is fetched or staged twice."""
    srv = FakeStac(_skewed())
    srv.start()
    try:
        stage = str(tmp_path / "stage")
        opts = ApiOptions(concurrency=3, limit=20, windows=1, window_pages=2, segment_items=40)
        segments, staged_total = 0, 0
        while True:
            res = load(stage, [srv.base], api=opts)
            segments += 1
            assert res.replaced == 0 and res.duplicates == 0
            staged_total += res.staged
            if res.api_done or not res.api_pending:
                break
            opts.requests = res.api_pending
        assert segments > 3 and staged_total == 370 and len(staged(stage)) == 370
    finally:
        srv.stop()


def test_split_window_keeps_open_ends_and_touching_edges() -> None:
    from stacbatch.api._windows import split_window

    coll = {"extent": {"temporal": {"interval": [["2020-01-01T00:00:00Z", "2020-01-05T00:00:00Z"]]}}}
    parts = split_window("../2020-01-03T00:00:00Z", coll, 2)
    assert parts == ["../2020-01-02T00:00:00.000000Z", "2020-01-02T00:00:00.000000Z/2020-01-03T00:00:00Z"]
    assert split_window(None, coll, 4)[0].startswith("../") and split_window(None, coll, 4)[-1].endswith("/..")
    assert split_window("2020-01-01T00:00:00Z/2020-01-01T00:00:01Z", coll, 2) == []  # under two seconds
    assert split_window("2020-01-01T00:00:00Z", coll, 2) == []  # an instant
    assert split_window(None, {}, 3) == []  # nothing to measure an open window by


@pytest.mark.parametrize("search", [True, False], ids=["search", "items-endpoint"])
def test_a_query_whose_count_is_complete_still_follows_its_next_link(tmp_path: Path, search: bool) -> None:
    """CMR-STAC keeps a next link on its last page. A count is a hint, never a stop condition (issue 18: a server
    capping pages below the limit made a "complete" count end queries early): the one empty page after the last
    is the whole cost with an honest server."""
    feats = [item(f"E{i:02d}", collection="E", properties={"datetime": f"{_day(i)}T00:00:00Z"}) for i in range(45)]
    srv = FakeStac({"E": feats}, search=search)
    srv.start()
    try:
        res = load(str(tmp_path / "s"), [srv.base], api=ApiOptions(limit=20, windows=1, window_pages=0))
        assert res.staged == 45 and (res.api.pages, res.api.requests, srv.empty_pages) == (4, 4, 1)
        assert res.api.count_mismatches == 0
    finally:
        srv.stop()


def _many(n_coll: int, per: int) -> dict[str, list[dict[str, Any]]]:
    return {
        f"M{c:03d}": [
            item(f"same-{i}", collection=f"M{c:03d}", properties={"datetime": f"{_day(i)}T00:00:00Z"})
            for i in range(per)
        ]
        for c in range(n_coll)
    }


@pytest.mark.parametrize("refuse", [False, True], ids=["limit-taken", "limit-refused"])
def test_collections_are_listed_in_few_pages_even_where_limit_is_refused(tmp_path: Path, refuse: bool) -> None:
    """/collections is asked for 1000 a page (stac-fastapi gives 10 by default: 16 round trips for 153 collections);
    a server that refuses the parameter is asked again without it, and every collection is still found."""
    srv = FakeStac(_many(250, 1), collections_page=1000 if not refuse else 100, refuse_collections_limit=refuse)
    srv.start()
    try:
        res = load(str(tmp_path / "stage"), [srv.base], api=ApiOptions(concurrency=4))
        assert res.failed == 0 and res.staged == 250
        listing = [x[2] for x in srv.log if x[2].split("?")[0].endswith("/collections")]
        if refuse:
            assert listing[0].endswith("?limit=1000") and len(listing) == 1 + 3  # the refused one, then 3 pages
        else:
            assert listing == ["/stac/PROV/collections?limit=1000"]
    finally:
        srv.stop()


def test_many_small_collections_are_searched_in_groups(tmp_path: Path) -> None:
    """A search per collection cost a request each (153 small collections from pgstac took 153 requests and lost
    to pystac-client's 2): beyond 2 x --concurrency collections, searches ask for groups of them. Ids repeat
    across collections (the same ids everywhere), which must not be taken for duplicates."""
    srv = FakeStac(_many(40, 3))
    srv.start()
    try:
        stage = str(tmp_path / "stage")
        res = load(stage, [srv.base], api=ApiOptions(concurrency=4))
        assert res.failed == 0 and res.api.queries == 8 and res.api.requests - len(srv.log) <= 0
        assert len(staged(stage)) == 120
        searches = [x for x in srv.log if "/search" in x[2]]
        # a page each (5 collections x 3 items), and the empty page after it that CMR-STAC's lingering next link costs
        assert len(searches) == 16
    finally:
        srv.stop()


def test_a_deep_group_splits_into_its_collections(tmp_path: Path) -> None:
    srv = FakeStac(_many(20, 40))
    srv.start()
    try:
        stage = str(tmp_path / "stage")
        res = load(stage, [srv.base], api=ApiOptions(concurrency=2, limit=10, window_pages=3))
        assert res.failed == 0 and res.api.splits >= 4
        assert len(staged(stage)) == 800
    finally:
        srv.stop()


def test_a_failed_group_is_retried_as_that_group(tmp_path: Path) -> None:
    srv = FakeStac(_many(12, 2), broken=("M005",))
    srv.start()
    try:
        stage = str(tmp_path / "stage")
        p = cli("load", srv.base, "--stage", stage, "--concurrency", "2", "--max-retries", "1")
        assert p.returncode == 3, p.stderr
        got = staged(stage)
        run_id = stacbatch.open_stage(stage).manifest.last_run["run_id"]  # type: ignore[index]
        failures = [
            orjson.loads(x) for x in (Path(stage) / "runs" / run_id / "failures.ndjson").read_bytes().splitlines()
        ]
        (failure,) = failures
        assert "M005" in failure["collections"] and failure["collection"] == failure["collections"][0]
        srv.broken = ()
        p = cli("load", "--retry-failed", run_id, "--stage", stage)
        assert p.returncode == 0, p.stderr
        assert len(staged(stage)) == 24 and len(got) == 24 - 2 * len(failure["collections"])
    finally:
        srv.stop()
