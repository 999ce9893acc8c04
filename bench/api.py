"""STAC API ingestion next to pystac-client, 100 items per page for both:

(a) against the project's CMR-STAC-like test server (tests/stac_server.py) with 200 ms of latency per page: where
    CMR-STAC's cost is, parallelism must come from splitting the query (collections, time windows), which
    pystac-client does not do;
(b) against a real stac-fastapi-pgstac on PostgreSQL + pgstac (tests/pgstac_peer.py, installed by `make peers`),
    sharing the two cores with both clients.

(c) issue 18's small real catalog (the corpus items pgstac accepts) from stac-fastapi-pgstac, next to pystac-client
    at 100 and 1000 items a page, with the server hydrating items in its Python (USE_API_HYDRATE=true, ~3x faster
    paging) and in PostgreSQL (its default); a "server floor" row is the bare HTTP transfer (4 concurrent searches,
    1000 a page, nothing decoded or written): no client can be faster than that on this machine.

    python -m bench.api --items 20000
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._measure import Measurement, discard, empty_trash, run
from bench.generate import COLLECTIONS, generate, make_collection

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable

PYSTAC_CLIENT = """
import sys, orjson
from pystac_client import Client
client = Client.open(sys.argv[1])
search = client.search(collections=sys.argv[3].split(","), limit=100)
with open(sys.argv[2], "wb") as f:
    for item in search.items_as_dicts():
        f.write(orjson.dumps(item) + b"\\n")
"""


def _serve(n: int, latency: float, conn: Any) -> None:
    """The test server in a process of its own (started by ``bench_api``): in the measuring process it shared a
    GIL with the memory sampler, which delayed its responses."""
    sys.path.insert(0, str(ROOT / "tests"))
    from stac_server import FakeStac  # the test server: same quirks as the tests prove against

    items: dict[str, list[dict[str, Any]]] = {}
    for item in generate(n, seed=11):
        items.setdefault(item["collection"], []).append(item)
    srv = FakeStac(items, latency=latency)
    srv.warm()
    srv.start()
    try:
        conn.send((srv.base, ",".join(sorted(items))))
        conn.recv()  # until the benchmark is done
    finally:
        srv.stop()


def bench_api(
    n: int, work: Path, sb: list[str], add: Callable[[str, str, Measurement], None], latency: float = 0.2
) -> None:
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    here, there = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(n, latency, there), daemon=True)
    server.start()
    try:
        base, colls = here.recv()
        stage = work / "api-stage"
        discard(stage)
        add(
            "API load (CMR-like, 16)",
            "stacbatch",
            run([*sb, "load", base, "--stage", str(stage), "--concurrency", "16"]),
        )
        add(
            "API load (CMR-like, 16)",
            "pystac-client",
            run([PY, "-c", PYSTAC_CLIENT, base, str(work / "pc.ndjson"), colls]),
        )
    finally:
        here.send("stop")
        server.join(30)


def bench_pgstac(n: int, work: Path, sb: list[str], add: Callable[[str, str, Measurement], None]) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from pgstac_peer import PgstacPeer, missing

    why = missing()
    if why:
        print(f"  skipped stac-fastapi-pgstac: {why}", file=sys.stderr)
        return
    srv = PgstacPeer().start()
    try:
        items = list(generate(n, seed=12))
        used = {i["collection"] for i in items}
        srv.load((make_collection(c) for c in COLLECTIONS if c["id"] in used), items)
        del items
        stage = work / "pgstac-stage"
        discard(stage)
        step = "API load (pgstac, 16)"
        add(step, "stacbatch", run([*sb, "load", srv.base, "--stage", str(stage), "--concurrency", "16"]))
        add(step, "pystac-client", run([PY, "-c", PYSTAC_CLIENT, srv.base, str(work / "pc2.ndjson"), ",".join(used)]))
    finally:
        srv.stop()


PYSTAC_CLIENT_1000 = PYSTAC_CLIENT.replace("limit=100)", "limit=1000)")

SERVER_FLOOR = """
import sys, json, urllib.request, concurrent.futures as cf
base, ids = sys.argv[1], sys.argv[2].split(",")
def pull(group):
    url, body = base + "/search", {"collections": group, "limit": 1000}
    while True:
        req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            page = json.loads(r.read())
        nxt = [ln for ln in page.get("links", []) if ln.get("rel") == "next"]
        if not page.get("features") or not nxt:
            return
        url, body = nxt[0]["href"], nxt[0].get("body", body)
with cf.ThreadPoolExecutor(4) as ex:
    list(ex.map(pull, [ids[i::4] for i in range(4)]))
"""


def real_catalog() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The real corpus items that pgstac accepts (a collection, a datetime or a range, a geometry), last wins, and
    a minimal Collection for each of their collection ids."""
    import orjson

    items: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((ROOT.parent / "shared" / "corpus" / "real").glob("items/*.ndjson")):
        for line in path.read_bytes().splitlines():
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            props = doc.get("properties") if isinstance(doc, dict) else None
            if not isinstance(props, dict) or not isinstance(doc.get("collection"), str) or not doc.get("geometry"):
                continue
            if props.get("datetime") or (props.get("start_datetime") and props.get("end_datetime")):
                items[(doc["collection"], str(doc.get("id")))] = doc
    colls = [
        {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": cid,
            "description": "corpus",
            "license": "proprietary",
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [[None, None]]}},
            "links": [],
        }
        for cid in sorted({c for c, _ in items})
    ]
    return list(items.values()), colls


def bench_pgstac_small(work: Path, sb: list[str], add: Callable[[str, str, int, Measurement], None]) -> None:
    """Issue 18's case: a small real catalog from a fast local stac-fastapi-pgstac, stacbatch with its defaults
    next to pystac-client at 100 and at 1000 items a page (its best here)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from pgstac_peer import PgstacPeer, missing

    why = missing()
    if why:
        print(f"  skipped stac-fastapi-pgstac: {why}", file=sys.stderr)
        return
    items, colls = real_catalog()
    if not items:
        print("  skipped the real catalog: ../shared/corpus/real is missing", file=sys.stderr)
        return
    ids = ",".join(c["id"] for c in colls)
    n = len(items)
    for hydrate_in_api in (True, False):
        srv = PgstacPeer(hydrate_in_api=hydrate_in_api).start()
        try:
            srv.load(colls, items)
            stage = work / "pgstac-small-stage"
            step = "API load (pgstac, real" + (", API hydrate)" if hydrate_in_api else ", DB hydrate)")
            for _ in range(2):  # the second round is the one kept: the server's caches are warm for every tool
                discard(stage)
                ours = run([*sb, "load", srv.base, "--stage", str(stage)])
                them = run([PY, "-c", PYSTAC_CLIENT, srv.base, str(work / "pc3.ndjson"), ids])
                best = run([PY, "-c", PYSTAC_CLIENT_1000, srv.base, str(work / "pc4.ndjson"), ids])
                floor = run([PY, "-c", SERVER_FLOOR, srv.base, ids])
            add(step, "stacbatch", n, ours)
            add(step, "pystac-client", n, them)
            add(step, "pystac-client (limit 1000)", n, best)
            add(step, "server floor (bare HTTP)", n, floor)
        finally:
            srv.stop()


def main() -> None:
    from bench.run import OUT, Row, _tool, report

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--real-only", action="store_true", help="only (c), the small real catalog")
    args = ap.parse_args()
    rows: list[Row] = []
    work = OUT / "work-api"
    work.mkdir(parents=True, exist_ok=True)

    def add(step: str, tool: str, m: Measurement) -> None:
        rows.append(Row(step, tool, args.items, m))
        print(f"  {step} {tool}: {m.seconds:.1f} s rc={m.returncode} {m.stderr.strip()[-200:]}", file=sys.stderr)

    if not args.real_only:
        bench_api(args.items, work, [_tool("stacbatch"), "-q"], add, args.latency)
        bench_pgstac(args.items, work, [_tool("stacbatch"), "-q"], add)
    bench_pgstac_small(work, [_tool("stacbatch"), "-q"], lambda step, tool, n, m: rows.append(Row(step, tool, n, m)))
    print(report(rows))
    empty_trash()


if __name__ == "__main__":
    main()
