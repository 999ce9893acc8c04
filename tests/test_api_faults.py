"""Hostile STAC APIs (issue 18): each case is a mode of the fault-injecting server in ``stac_server.py``."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import cli, item
from stac_server import FakeStac
from test_api import catalog, staged

import stacbatch
from stacbatch.api import ApiOptions
from stacbatch.api._options import AUTO_LIMIT, FALLBACK_LIMIT
from stacbatch.stage import load


@contextmanager
def serve(items: dict[str, list[dict[str, Any]]], **kwargs: Any) -> Iterator[FakeStac]:
    srv = FakeStac(items, **kwargs)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _user_headers(srv: FakeStac) -> list[set[str]]:
    """Per request: which of the user's headers it carried."""
    return [{k.lower() for k in h} & {"authorization", "x-api-key"} for _p, h in srv.request_headers]


def _failures(stage: str) -> list[dict[str, Any]]:
    run_dir = next(Path(stage, "runs").iterdir())
    return [orjson.loads(x) for x in (run_dir / "failures.ndjson").read_bytes().splitlines()]


# -- 1. headers stay with their origin ---------------------------------------------------------------------------


def test_headers_are_not_sent_to_a_foreign_next_host(tmp_path: Path) -> None:
    with serve(catalog(1, 60), page_cap=20) as other, serve(catalog(1, 60), page_cap=20, next_base=other.base) as srv:
        stage = str(tmp_path / "s")
        args = ["--stage", stage, "--windows", "1", "-H", "Authorization: Bearer ${TOK}"]
        p = cli("load", srv.base, *args, "-H", "X-Api-Key: k3y", env={"TOK": "s3cr3t"})
        assert p.returncode == 0, p.stderr
        assert len(staged(stage)) == 60  # the foreign host served the later pages, without the headers
        assert srv.request_headers and all(h == {"authorization", "x-api-key"} for h in _user_headers(srv))
        assert other.request_headers and not any(_user_headers(other))
        assert "s3cr3t" not in p.stderr + p.stdout
        # --header-host trusts that host too
        before = len(other.request_headers)
        p = cli("load", srv.base, *args, "--header-host", f"127.0.0.1:{other.port}", env={"TOK": "s3cr3t"})
        assert p.returncode == 0, p.stderr
        assert len(other.request_headers) > before
        assert all(h == {"authorization"} for h in _user_headers(other)[before:])


@pytest.mark.parametrize("status", [307, 308])
def test_headers_are_not_sent_after_a_redirect_to_another_origin(tmp_path: Path, status: int) -> None:
    with serve(catalog(1, 60)) as other:
        target = f"http://127.0.0.1:{other.port}"
        with serve(catalog(1, 60), redirect_to=target, redirect_status=status) as srv:
            opts = ApiOptions(headers={"Authorization": "Bearer t", "X-Api-Key": "k"}, limit=20, windows=2)
            res = load(str(tmp_path / "s"), [srv.base], api=opts)
            assert res.failed == 0 and len(staged(str(tmp_path / "s"))) == 60
            assert any(p.startswith("/stac/PROV/search") for p, _h in srv.request_headers)  # it redirected
            assert all(h == {"authorization", "x-api-key"} for h in _user_headers(srv))
            # the redirected POSTs (body kept) and the other host's own next links: no user header
            assert any(p.startswith("/stac/PROV/search") for p, _h in other.request_headers)
            assert not any(_user_headers(other))


@pytest.mark.parametrize(
    ("header", "env"),
    [
        ("X-Key: ${EVIL}", {"EVIL": "abc\r\nX-Injected: 1"}),
        ("X-Key: ${EVIL}", {"EVIL": "abc\n"}),
        ("X-Key: abc\rdef", {}),
        ("X Key: abc", {}),
    ],
    ids=["crlf-from-env", "trailing-lf-from-env", "cr", "bad-name"],
)
@pytest.mark.parametrize("command", ["load", "discover"])
def test_header_values_with_line_breaks_are_refused(
    tmp_path: Path, header: str, env: dict[str, str], command: str
) -> None:
    stage = tmp_path / "s"
    args = ["--stage", str(stage)] if command == "load" else []
    with serve(catalog(1, 5)) as srv:
        p = cli(command, srv.base, *args, "-H", header, env=env)
    assert p.returncode == 4, p.stderr
    assert p.stderr.count("\n") == 1 and "--header" in p.stderr and "Traceback" not in p.stderr
    assert "abc" not in p.stderr  # the value is not shown
    assert not stage.exists()


# -- 5. a body cut off is retried -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["reset", "truncate"])
def test_a_body_cut_off_is_retried(tmp_path: Path, cut: str) -> None:
    with serve(catalog(1, 100), cut_every=2, cut=cut) as srv:
        res = load(str(tmp_path / "s"), [srv.base], api=ApiOptions(concurrency=2, limit=20, windows=1))
        assert res.failed == 0 and res.api.failed_queries == 0 and res.api.retries > 0
        assert len(staged(str(tmp_path / "s"))) == 100


# -- 2. counts are hints --------------------------------------------------------------------------------------------


def test_a_count_that_lies_low_ends_nothing_and_is_reported(tmp_path: Path) -> None:
    """Pages capped at 50 and numberMatched 120: all 1,000 items, exit 0, and a warning line."""
    feats = [
        item(f"L{i:04d}", collection="L", properties={"datetime": f"2021-01-01T00:{i // 60:02d}:{i % 60:02d}Z"})
        for i in range(1000)
    ]
    with serve({"L": feats}, page_cap=50, lie_matched=120) as srv:
        stage = str(tmp_path / "s")
        p = cli("load", srv.base, "--stage", stage, "--windows", "1")
        assert p.returncode == 0, p.stderr
        assert len(staged(stage)) == 1000
        warning = [line for line in p.stderr.splitlines() if "warning" in line]
        assert len(warning) == 1 and "counted 120, returned 1,000" in warning[0], p.stderr
        # an honest empty page ends it: 20 pages of 50 and one empty
        assert srv.empty_pages == 1


# -- 3. paging loops and --max-pages ------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", ["self", "back"])
def test_a_paging_loop_fails_its_query_with_a_reason(tmp_path: Path, loop: str) -> None:
    with serve(catalog(2, 100), loop=loop) as srv:
        stage = str(tmp_path / "s")
        t0 = time.monotonic()
        res = load(stage, [srv.base], api=ApiOptions(limit=20, windows=1, window_pages=0))
        assert time.monotonic() - t0 < 30
        assert res.api.failed_queries == 2 and res.failed == 2 and res.api.requests < 20
        recs = _failures(stage)
        assert {r["collection"] for r in recs} == {"C0_1.0", "C1_1.0"}
        assert all("paging loop" in r["reason"] and r["request"]["method"] == "GET" for r in recs)


def test_max_pages_stops_a_query(tmp_path: Path) -> None:
    with serve(catalog(1, 100)) as srv:
        stage = str(tmp_path / "s")
        res = load(stage, [srv.base], api=ApiOptions(limit=20, windows=1, window_pages=0, max_pages=3))
        assert res.api.failed_queries == 1 and res.api.pages == 3 and len(staged(stage)) == 60
        (rec,) = _failures(stage)
        assert "more than --max-pages 3 pages" in rec["reason"]


# -- 4. Retry-After is capped; Ctrl-C stops every wait --------------------------------------------------------------


@pytest.mark.parametrize("retry_after", ["86400", "Fri, 31 Dec 2099 23:59:59 GMT"], ids=["seconds", "date"])
def test_a_huge_retry_after_fails_the_request_at_once(tmp_path: Path, retry_after: str) -> None:
    # requests 1 and 2 are the landing page and /collections; every third one is a 429
    with serve(catalog(1, 60), fault_every=3, fault_cycle=(429,), retry_after=retry_after) as srv:
        stage = str(tmp_path / "s")
        t0 = time.monotonic()
        args = ["--timeout", "5", "--max-retries", "1", "--concurrency", "1", "--windows", "1"]
        p = cli("load", srv.base, "--stage", stage, *args, timeout=60)
        assert time.monotonic() - t0 < 30
        assert p.returncode == 3, p.stderr
        (rec,) = _failures(stage)
        assert rec["status"] == 429 and "--max-retry-after 120 s: not waiting" in rec["reason"]
        assert "Traceback" not in p.stderr


def test_interrupt_stops_a_retry_after_wait_and_resumes(tmp_path: Path) -> None:
    with serve(catalog(1, 60), fault_every=3, fault_cycle=(429,), retry_after="60") as srv:
        stage = tmp_path / "s"
        args = ["--stage", str(stage), "--concurrency", "1", "--windows", "1"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "stacbatch", "load", srv.base, *args],
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not any(s == 429 for *_x, s in srv.log) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # inside the 60 s wait now
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
        assert time.monotonic() - t0 < 5, "the interrupt waited for Retry-After"
        # one line at most ("interrupted"): typer hands the CLI a 130 for a KeyboardInterrupt (see the report)
        assert proc.returncode == 130 and err.count("\n") <= 1 and "Traceback" not in err, err
        checkpoint = orjson.loads((stage / "runs" / "api-checkpoint.json").read_bytes())
        assert [p["request"]["method"] for p in checkpoint["pending"]] == ["POST"]
        assert not (stage / "manifest.json").exists() or stacbatch.open_stage(str(stage)).manifest.version == 0
        srv.fault_every = 0  # the server recovered
        p = cli("load", "--resume", *args)
        assert p.returncode == 0, p.stderr
        assert len(staged(str(stage))) == 60


# -- 6. a count of 10^9 does not make the splitter explode ---------------------------------------------------------


def test_a_huge_count_splits_once_and_then_pages(tmp_path: Path) -> None:
    with serve(catalog(1, 230), lie_matched=10**9) as srv:
        stage = str(tmp_path / "s")
        p = cli("load", srv.base, "--stage", stage, "--windows", "1", "--concurrency", "4", timeout=60)
        assert p.returncode == 0, p.stderr
        assert len(staged(stage)) == 230
        assert "(1 windows split by count)" in p.stderr  # the parts' counts did not shrink: they were paged
        searches = [x for x in srv.log if x[2].startswith("/stac/PROV/search")]
        assert len(searches) < 60  # 1 split + 16 parts of a page or two each
        assert "warning" in p.stderr and "counted 1,000,000,000" in p.stderr


def test_splitting_is_bounded_per_collection(tmp_path: Path) -> None:
    with serve(catalog(1, 230), lie_matched=10**9) as srv:
        opts = ApiOptions(limit=20, windows=1, concurrency=8, max_split_parts=5)
        res = load(str(tmp_path / "s"), [srv.base], api=opts)
        assert res.failed == 0 and res.staged == 230 and res.api.splits == 1 and res.api.queries == 6


# -- 7. page size cap ---------------------------------------------------------------------------------------------


def test_a_page_past_max_page_bytes_fails_its_query(tmp_path: Path) -> None:
    with serve(catalog(1, 40), huge=8 << 20) as srv:
        stage = str(tmp_path / "s")
        res = load(stage, [srv.base], api=ApiOptions(limit=20, windows=1, max_page_bytes=1 << 20))
        assert res.api.failed_queries == 1 and res.staged == 0
        (rec,) = _failures(stage)
        assert "larger than --max-page-bytes 1,048,576 bytes" in rec["reason"]
        # a landing page past the cap: one line, exit 4
        p = cli("load", srv.base, "--stage", str(tmp_path / "t"), "--max-page-bytes", "100")
        assert p.returncode == 4 and p.stderr.count("\n") == 1 and "--max-page-bytes 100" in p.stderr, p.stderr


# -- 8. page size ----------------------------------------------------------------------------------------------------


def test_without_limit_large_pages_are_asked_and_a_refusal_falls_back(tmp_path: Path) -> None:
    with serve(catalog(1, 230), page_cap=10_000) as srv:
        res = load(str(tmp_path / "a"), [srv.base], api=ApiOptions(windows=1))
        assert res.staged == 230 and res.api.pages == 2 and res.api.limit == AUTO_LIMIT  # one page and an empty one
    with serve(catalog(1, 230), limit_max=500) as srv:
        res = load(str(tmp_path / "b"), [srv.base], api=ApiOptions(windows=2, concurrency=2))
        assert res.failed == 0 and res.staged == 230 and res.api.limit == FALLBACK_LIMIT
        limits = [orjson.loads(b)["limit"] for b in srv.posts]
        assert limits[0] == AUTO_LIMIT and limits[-1] == FALLBACK_LIMIT and sum(x == AUTO_LIMIT for x in limits) <= 2


# -- 9. diff, merge and discover take the source options ----------------------------------------------------------


def test_diff_merge_and_discover_take_the_api_options(tmp_path: Path) -> None:
    with serve(catalog(2, 60)) as srv:
        stage = str(tmp_path / "s")
        load(stage, [srv.base], api=ApiOptions(collections=["C0_1.0"], limit=20))
        before = len(srv.posts)
        p = cli("diff", stage, srv.base, "-c", "C0_1.0", "--limit", "15", "-H", "X-Api-Key: k", "--format", "json")
        assert p.returncode == 0, p.stderr
        assert orjson.loads(p.stdout)["total"] == {"added": 0, "deleted": 0, "modified": 0, "unchanged": 60}
        bodies = [orjson.loads(b) for b in srv.posts[before:]]
        assert bodies and all(b["collections"] == ["C0_1.0"] and b["limit"] == 15 for b in bodies)
        assert all(h == {"x-api-key"} for h in _user_headers(srv)[-len(bodies) :])
        target = str(tmp_path / "t")
        args = ["--stage", target, "-c", "C1_1.0", "--datetime", "2021-01-01/2021-01-10", "--limit", "30"]
        p = cli("merge", srv.base, *args)
        assert p.returncode == 0, p.stderr
        assert {c for c, _i in staged(target)} == {"C1_1.0"} and len(staged(target)) == 20
        p = cli("merge", str(tmp_path / "nope.ndjson"), "--stage", target, "--bbox", "0,0,1,1")
        assert p.returncode == 4 and "apply to STAC API URLs only" in p.stderr, p.stderr
        n = len(srv.request_headers)
        p = cli("discover", srv.base, "-f", "ndjson", "-H", "X-Api-Key: k", "--timeout", "5")
        assert p.returncode == 0 and len(p.stdout.splitlines()) == 2, p.stderr
        assert all(h == {"x-api-key"} for h in _user_headers(srv)[n:])
