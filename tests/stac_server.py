"""A fault-injecting STAC API on 127.0.0.1 that behaves like NASA CMR-STAC (``../shared/reference/cmr-stac.md``).

Provider catalogs under ``/stac``, opaque base64 cursors, GET-only next links with bracketed parameters after a POST
search, the last non-empty page keeping its next link, page size min(limit, 100) (20 by default, 400 above 5000),
``{"errors": [...]}`` bodies, ``context`` on /search and counts on /items, items from /items with only a self link.
Faults: every ``fault_every``-th request fails with the next status of ``fault_cycle`` (500 "Oops", 502, 503, 504,
429 with ``Retry-After``); ``latency`` delays every page; ``broken`` collections always fail with 500.

Hostile modes (issue 18), on item pages (``/search`` and ``/collections/{id}/items``):
``next_base``      next links name another server (its base URL: a foreign host);
``redirect_to``    item searches are redirected (``redirect_status``, 307 keeps a POST) to another server;
``loop``           "self": each next link asks for the page it is on; "back": pages after the first link back to it;
``lie_matched``    the count (numberMatched, context.matched) says this, whatever the truth;
``page_cap``       pages hold at most this many items (``limit_max``: a larger limit is a 400);
``cut_every``      every n-th item page is cut: "reset" closes the connection mid-body, "truncate" sends half of it
                   as a complete 200 (invalid JSON);
``huge``           item pages carry this many bytes of padding, sent chunked (no Content-Length).
``refuse_collections_limit``  ``/collections?limit=`` is a 400, as on a strict OGC API server.
Every request's headers are kept in ``request_headers`` (path, headers).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import json
import socket
import threading
import time
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web


def _json(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # orjson: the server must not be the bottleneck of the client benchmarks
    return web.Response(body=orjson.dumps(doc), status=status, headers=headers, content_type="application/json")


PROVIDER = "PROV"


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([offset, "search-after"]).encode()).decode()


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    return int(json.loads(base64.urlsafe_b64decode(cursor.encode()))[0])


def _bracketed(body: dict[str, Any]) -> list[tuple[str, str]]:
    """CMR-STAC re-encodes a POST body as bracketed query parameters in its (GET) next link."""
    out: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}[{k}]", v)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(f"{prefix}[{i}]", v)
        else:
            out.append((prefix, str(value)))

    for k, v in body.items():
        walk(k, v)
    return out


def _when(value: Any, end: bool) -> datetime.datetime:
    if not isinstance(value, str) or value in ("", ".."):
        return (
            datetime.datetime.max.replace(tzinfo=datetime.UTC)
            if end
            else datetime.datetime.min.replace(tzinfo=datetime.UTC)
        )
    parsed = datetime.datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


_SPANS: dict[int, tuple[datetime.datetime, datetime.datetime] | None] = {}


def _span(feature: dict[str, Any]) -> tuple[datetime.datetime, datetime.datetime] | None:
    key = id(feature)
    if key not in _SPANS:
        props = feature.get("properties") or {}
        start = props.get("datetime") or props.get("start_datetime")
        end = props.get("datetime") or props.get("end_datetime")
        _SPANS[key] = None if start is None or end is None else (_when(start, False), _when(end, True))
    return _SPANS[key]


def _filter(features: list[dict[str, Any]], interval: str | None) -> list[dict[str, Any]]:
    """STAC API datetime filter: items whose datetime (or start/end range) intersects the closed interval."""
    if not interval:
        return features
    lo_s, _, hi_s = interval.partition("/")
    lo, hi = _when(lo_s, False), _when(hi_s if "/" in interval else lo_s, True)
    out = []
    for f in features:
        span = _span(f)
        if span is not None and span[0] <= hi and lo <= span[1]:
            out.append(f)
    return out


def _from_query(query: Any) -> dict[str, Any]:
    """Query parameters (plain or bracketed) back into a search body."""
    body: dict[str, Any] = {}
    for key, value in query.items():
        if "[" in key:
            name = key.split("[", 1)[0]
            body.setdefault(name, []).append(value)
        elif key in ("collections", "ids", "bbox"):
            body[key] = value.split(",")
        else:
            body[key] = value
    return body


class FakeStac:
    def __init__(
        self,
        items: dict[str, list[dict[str, Any]]],
        *,
        fault_every: int = 0,
        fault_cycle: tuple[int, ...] = (500, 502, 503, 504),
        retry_after: str = "1",
        latency: float = 0.0,
        broken: tuple[str, ...] = (),
        collections_page: int = 100,
        search: bool = True,
        next_base: str | None = None,
        redirect_to: str | None = None,
        redirect_status: int = 307,
        loop: str | None = None,
        lie_matched: int | None = None,
        page_cap: int = 100,
        limit_max: int = 5000,
        cut_every: int = 0,
        cut: str = "reset",
        huge: int = 0,
        refuse_collections_limit: bool = False,
    ) -> None:
        self.items = items
        self.fault_every = fault_every
        self.fault_cycle = fault_cycle
        self.retry_after = retry_after
        self.latency = latency
        self.broken = broken
        self.collections_page = collections_page
        self.search_enabled = search
        self.next_base = next_base
        self.redirect_to = redirect_to
        self.redirect_status = redirect_status
        self.loop = loop
        self.lie_matched = lie_matched
        self.page_cap = page_cap
        self.limit_max = limit_max
        self.cut_every = cut_every
        self.cut = cut
        self.huge = huge
        self.refuse_collections_limit = refuse_collections_limit
        self.request_headers: list[tuple[str, dict[str, str]]] = []
        self._pages_served = 0
        self._cache: dict[int, bytes] = {}
        self._pools: dict[tuple[tuple[str, ...], str | None], list[dict[str, Any]]] = {}
        self.posts: list[str] = []  # POST search bodies, as received (sorted keys)
        self.log: list[tuple[float, str, str, int]] = []  # (arrival time, method, path_qs, status)
        self.empty_pages = 0  # item pages served with no features
        self._n = 0
        self._faults = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self._app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self.port)
            self._loop.run_until_complete(site.start())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()  # its self-pipe sockets too (ResourceWarning otherwise)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/stac/{PROVIDER}"

    # -- app ----------------------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults_mw])
        r = app.router
        r.add_get("/stac", self.root)
        r.add_get(f"/stac/{PROVIDER}", self.landing)
        r.add_get(f"/stac/{PROVIDER}/collections", self.collections)
        r.add_get(f"/stac/{PROVIDER}/collections/{{cid}}", self.collection)
        r.add_get(f"/stac/{PROVIDER}/collections/{{cid}}/items", self.coll_items)
        r.add_get(f"/stac/{PROVIDER}/search", self.search)
        r.add_post(f"/stac/{PROVIDER}/search", self.search)
        return app

    @web.middleware
    async def _faults_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self._n += 1
        arrived = time.monotonic()
        status = 200
        self.request_headers.append((request.path_qs, dict(request.headers)))
        try:
            if self.redirect_to and request.path.startswith(f"/stac/{PROVIDER}/search"):
                status = self.redirect_status
                return web.Response(status=status, headers={"Location": self.redirect_to + request.path_qs})
            if self.fault_every and self._n % self.fault_every == 0:
                status = self.fault_cycle[self._faults % len(self.fault_cycle)]
                self._faults += 1
                return self._fault(status)
            if self.latency:
                await asyncio.sleep(self.latency)
            resp: web.StreamResponse = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self.log.append((arrived, request.method, request.path_qs, status))

    def _fault(self, status: int) -> web.Response:
        if status == 429:
            return _json({"errors": ["Too many requests"]}, status=429, headers={"Retry-After": self.retry_after})
        if status == 500:
            return _json(
                {
                    "errors": [
                        "Oops! Something has gone wrong. We have been alerted and are "
                        "working to resolve the problem. Please try your request again "
                        "later."
                    ]
                },
                status=500,
            )
        if status == 503:
            return _json({"errors": ["A problem occurred upstream"]}, status=503)
        return web.Response(
            status=status, text=f"<html><body>{status} Gateway error</body></html>", content_type="text/html"
        )

    @staticmethod
    def _error(status: int, message: str) -> web.Response:
        return _json({"errors": [message]}, status=status)

    async def root(self, request: web.Request) -> web.Response:
        return _json(
            {
                "type": "Catalog",
                "id": "stac",
                "stac_version": "1.0.0",
                "description": "CMR",
                "links": [{"rel": "child", "href": self.base}],
            }
        )

    async def landing(self, request: web.Request) -> web.Response:
        b = self.base
        return _json(
            {
                "type": "Catalog",
                "id": PROVIDER,
                "stac_version": "1.0.0",
                "description": "provider",
                "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
                "links": [
                    {"rel": "self", "href": b},
                    {"rel": "root", "href": b},
                    {"rel": "data", "href": f"{b}/collections", "type": "application/json"},
                ]
                + (
                    [
                        {"rel": "search", "href": f"{b}/search", "method": "GET", "type": "application/geo+json"},
                        {"rel": "search", "href": f"{b}/search", "method": "POST", "type": "application/geo+json"},
                    ]
                    if self.search_enabled
                    else []
                ),
            }
        )

    def _collection_doc(self, cid: str) -> dict[str, Any]:
        times = sorted(str(f["properties"].get("datetime")) for f in self.items[cid] if f["properties"].get("datetime"))
        interval = [times[0], times[-1]] if times else [None, None]
        return {
            "type": "Collection",
            "id": cid,
            "stac_version": "1.0.0",
            "description": f"{cid} granules",
            "license": "proprietary",
            "extent": {"spatial": {"bbox": [[-180, -90, 180, 90]]}, "temporal": {"interval": [interval]}},
            "links": [{"rel": "self", "href": f"{self.base}/collections/{cid}"}],
        }

    async def collections(self, request: web.Request) -> web.Response:
        if self.refuse_collections_limit and "limit" in request.query:
            return _json({"errors": ["unknown parameter: limit"]}, status=400)
        ids = sorted(self.items)
        start = _offset(request.query.get("cursor"))
        size = min(self.collections_page, int(request.query.get("limit") or self.collections_page))
        page = ids[start : start + size]
        links = [{"rel": "self", "href": str(request.url)}]
        if start + size < len(ids):
            links.append({"rel": "next", "href": f"{self.base}/collections?cursor={_cursor(start + len(page))}"})
        return _json({"collections": [self._collection_doc(c) for c in page], "links": links})

    async def collection(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        if cid not in self.items:
            return self._error(404, f"Collection [{cid}] not found for provider [{PROVIDER}]")
        return _json(self._collection_doc(cid))

    def _limit(self, raw: Any) -> int | web.Response:
        try:
            limit = int(raw) if raw not in (None, "") else 0
        except ValueError:
            return self._error(400, f"Limit must be between 0 and {self.limit_max}")
        if limit < 0 or limit > self.limit_max:
            return self._error(400, f"Limit must be between 0 and {self.limit_max}")
        return 20 if limit == 0 else min(limit, self.page_cap)

    def _next_cursor(self, start: int, n: int) -> int:
        if self.loop == "self":
            return start
        if self.loop == "back" and start > 0:
            return 0
        return start + n

    def _matched(self, n: int) -> int:
        return n if self.lie_matched is None else self.lie_matched

    async def _page(self, request: web.Request, page: bytes, content_type: str) -> web.StreamResponse:
        """An item page as sent, or as a hostile server sends it (cut, or padded past any sane size)."""
        self._pages_served += 1
        if self.cut_every and self._pages_served % self.cut_every == 0:
            if self.cut == "truncate":
                return web.Response(body=page[: len(page) // 2], content_type=content_type)
            resp = web.StreamResponse(headers={"Content-Type": content_type, "Content-Length": str(len(page))})
            await resp.prepare(request)
            await resp.write(page[: len(page) // 2])
            assert request.transport is not None
            request.transport.close()  # a connection reset in the middle of the body
            return resp
        if self.huge:
            resp = web.StreamResponse(headers={"Content-Type": content_type})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            await resp.write(page[:-1] + b',"padding":"')
            block = b"x" * (1 << 16)
            for _ in range(self.huge // len(block)):
                await resp.write(block)
            await resp.write(b'"}')
            await resp.write_eof()
            return resp
        return web.Response(body=page, content_type=content_type)

    async def coll_items(self, request: web.Request) -> web.StreamResponse:
        cid = request.match_info["cid"]
        if cid not in self.items:
            return self._error(404, f"Collection [{cid}] not found for provider [{PROVIDER}]")
        if cid in self.broken:
            return self._fault(500)
        size = self._limit(request.query.get("limit"))
        if isinstance(size, web.Response):
            return size
        start = _offset(request.query.get("cursor"))
        pool = _filter(self.items[cid], request.query.get("datetime"))
        feats = pool[start : start + size]
        out = []
        for f in feats:
            g = copy.deepcopy(f)
            g["links"] = [{"rel": "self", "href": f"{self.base}/collections/{cid}/items/{g['id']}"}]
            out.append(g)
        links = [{"rel": "self", "href": str(request.url)}]
        if feats:
            q = {k: v for k, v in request.query.items() if k != "cursor"}
            links.append(
                {
                    "rel": "next",
                    "href": f"{self.next_base or self.base}/collections/{cid}/items?"
                    + urlencode({**q, "cursor": _cursor(self._next_cursor(start, len(feats)))}),
                }
            )
        n = self._matched(len(pool))
        self.empty_pages += not out
        doc = {
            "type": "FeatureCollection",
            "features": out,
            "numberMatched": n,
            "numberReturned": len(out),
            "context": {"returned": len(out), "matched": n},
            "links": links,
        }
        return await self._page(request, orjson.dumps(doc), "application/json")

    async def search(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            body = await request.json()
            self.posts.append(orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode())
        else:
            body = _from_query(request.query)
        size = self._limit(body.get("limit"))
        if isinstance(size, web.Response):
            return size
        colls = body.get("collections") or sorted(self.items)
        if isinstance(colls, str):
            colls = colls.split(",")
        unknown = [c for c in colls if c not in self.items]
        if unknown:
            return self._error(404, f"Collection [{unknown[0]}] not found")
        if any(c in self.broken for c in colls):
            return self._fault(500)
        bbox = body.get("bbox")
        if bbox is not None:
            vals = [float(v) for v in bbox]
            if len(vals) == 4 and vals[0] > vals[2]:
                return self._error(
                    400, "BBOX must be in the form of 'bbox=swLon,swLat,neLon,neLat' with valid latitude and longitude."
                )
        when = body.get("datetime")
        pool = self._pool(tuple(colls), when if isinstance(when, str) else None)
        start = _offset(body.get("cursor") if isinstance(body.get("cursor"), str) else None)
        feats = pool[start : start + size]
        links = [{"rel": "self", "href": str(request.url)}, {"rel": "root", "href": self.base}]
        if feats:  # the last non-empty page keeps its next link; the page after it is empty without one
            params = {k: v for k, v in body.items() if k != "cursor"}
            q = [*_bracketed(params), ("cursor", _cursor(self._next_cursor(start, len(feats))))]
            base = self.next_base or self.base
            links.append({"rel": "next", "href": f"{base}/search?{urlencode(q)}", "method": "GET"})
        # Items are serialised once and spliced into pages: the server's CPU must not be what a client benchmark
        # measures (CMR-STAC's cost is latency, modelled by ``latency``).
        head = orjson.dumps(
            {
                "type": "FeatureCollection",
                "context": {"returned": len(feats), "limit": body.get("limit"), "matched": self._matched(len(pool))},
                "links": links,
            }
        )
        self.empty_pages += not feats
        page = head[:-1] + b',"features":[' + b",".join(self._bytes(f) for f in feats) + b"]}"
        return await self._page(request, page, "application/geo+json")

    def _pool(self, colls: tuple[str, ...], when: str | None) -> list[dict[str, Any]]:
        """The query's matches, filtered once per (collections, datetime): every page of a query asks again, and
        filtering ~3k items per request took the one server thread ~3 ms, which 16 concurrent requests queued
        behind each other (a quarter of the latency again)."""
        key = (colls, when)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = [f for c in colls for f in _filter(self.items[c], when)]
        return pool

    def warm(self) -> None:
        """Serialise every item and parse its time span now, as a benchmark's set-up: otherwise the first request
        for each item pays it on the server's one thread, and a client with 16 requests in flight waits for all
        of them in turn (the first rounds took ~0.35 s instead of ~0.2 s), which a sequential client does not."""
        for feats in self.items.values():
            for f in feats:
                self._bytes(f)
                _span(f)

    def _bytes(self, feature: dict[str, Any]) -> bytes:
        key = id(feature)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = orjson.dumps(feature)
        return cached
