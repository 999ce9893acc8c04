"""A STAC API as a load source: collections fetched concurrently on an asyncio loop in a background thread, pages
handed to the loader through a bounded queue (memory stays flat however many items), as parse units.

A page that still fails after its retries is recorded (request, status, body excerpt) and its query stops; the
other queries go on, and the load ends as partial.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import itertools
import queue
import threading
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stacbatch import _json
from stacbatch._scan import AVAILABLE as _KERNEL
from stacbatch.api._http import Http, HttpError
from stacbatch.api._stac import list_collections, match_collections, open_api, pages, search_request
from stacbatch.api._windows import parse_instant as _instant
from stacbatch.api._windows import split_window, time_windows
from stacbatch.errors import InputError
from stacbatch.sources._units import PagesUnit

_DONE = object()


@dataclass(frozen=True)
class _Complete:
    """Queue message: every query of ``collection`` has ended (all its pages were queued before this)."""

    collection: str


#: items per parse unit at most (pages already fetched are grouped up to this)
_UNIT_ITEMS = 2000


@dataclass
class ApiOptions:
    collections: list[str] = field(default_factory=list)
    bbox: list[float] | None = None
    datetime: str | None = None
    ids: list[str] | None = None
    max_items: int | None = None
    concurrency: int = 8
    rate_limit: float | None = None
    max_retries: int = 5
    timeout: float = 60.0
    headers: dict[str, str] = field(default_factory=dict)
    limit: int = 100
    method: str = "auto"
    #: time windows per collection (None: enough to keep ``concurrency`` requests busy; 1: no splitting)
    windows: int | None = None
    #: failure records of an earlier run (collection, request): fetch from exactly those requests on
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: stop after about this many items so that the caller can commit a checkpoint (0: never)
    segment_items: int = 0
    #: a window whose count (numberMatched) says more pages than this is split further (0: never)
    window_pages: int = 10


@dataclass
class ApiStats:
    items: int = 0
    pages: int = 0
    queries: int = 0
    splits: int = 0
    failed_queries: int = 0
    requests: int = 0
    retries: int = 0
    matched: int | None = None
    seconds: float = 0.0
    request_starts: list[float] = field(default_factory=list)


def parse_bbox(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise InputError(f"--bbox {text!r}: expected 4 (or 6) comma-separated numbers west,south,east,north") from None
    if len(values) not in (4, 6):
        raise InputError(f"--bbox {text!r}: expected 4 (or 6) numbers, got {len(values)}")
    west, south, east, north = (
        (values[0], values[1], values[2], values[3])
        if len(values) == 4
        else (values[0], values[1], values[3], values[4])
    )
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -90 <= south <= north <= 90):
        raise InputError(f"--bbox {text!r}: out of range (lon -180..180, lat -90..90, south <= north)")
    return values


def check_datetime(text: str) -> str:
    """An RFC 3339 datetime or interval (``a/b``, open ends ``..``); a date-only value is widened to the day."""
    parts = text.split("/")
    if len(parts) > 2 or not text:
        raise InputError(f"--datetime {text!r}: expected a datetime or an interval start/end")
    out = []
    for n, part in enumerate(parts):
        if part in ("..", "") and len(parts) == 2:
            out.append("..")
            continue
        value = part
        if len(value) == 10:  # a date: the whole day (CMR-STAC rejects date-only values)
            value += "T00:00:00Z" if (n == 0 or len(parts) == 1) else "T23:59:59Z"
        try:
            _dt.datetime.fromisoformat(value.replace("z", "Z"))
        except ValueError:
            raise InputError(f"--datetime {text!r}: {part!r} is not an RFC 3339 datetime") from None
        out.append(value)
    if len(parts) == 1 and len(text) == 10:
        out = [out[0], text + "T23:59:59Z"]
    return "/".join(out)


class ApiSource:
    """Iterate ``units()`` once; afterwards ``stats``, ``failures`` and ``collections`` describe what happened."""

    def __init__(self, url: str, options: ApiOptions) -> None:
        self.url = url
        self.options = options
        self.stats = ApiStats()
        self.failures: list[dict[str, Any]] = []
        self.collections: list[dict[str, Any]] = []
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(2, options.concurrency * 2))
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._api: Any = None
        self._rate_state: dict[str, float] = {}
        self._edge: set[tuple[str, str]] = set()
        #: per collection, its queries not yet ended (event loop thread only)
        self._open: dict[str, int] = {}
        #: query -> (collection, the request that continues it, or None when finished), as far as pages were taken
        self._frontier: dict[int, tuple[str, dict[str, Any] | None]] = {}
        self._query_ids = itertools.count()
        #: hand pages on as the bytes received (for worker processes) rather than decoded
        self.raw_pages = False
        self._tasks: asyncio.TaskGroup
        self.exhausted = False

    @property
    def decoded_features(self) -> bool:
        """Pages go on as decoded features (no kernel to read their bytes, nor workers to send bytes to), so the
        fetcher decodes them whole; otherwise it decodes only what paging needs (``indexed_page``)."""
        return not (self.raw_pages or _KERNEL)

    def prepare(self) -> None:
        """Open the API and resolve the collections before anything is written: an unreachable URL, a response that
        is not a STAC API or an unknown collection fails here, with one line."""

        async def run() -> None:
            o = self.options
            async with Http(
                max_retries=min(2, o.max_retries),
                timeout=o.timeout,
                headers=o.headers,
                rate_limit=o.rate_limit,
                rate_state=self._rate_state,
            ) as http:
                # one request at a time means one: no speculative /collections then
                api = await open_api(http, self.url, speculate=o.concurrency > 1)
                wanted = sorted({str(r["collection"]) for r in o.requests}) if o.requests else o.collections
                chosen = match_collections(await list_collections(http, api), wanted)
                if not chosen:
                    raise InputError(f"{self.url}: no collection matches {', '.join(o.collections) or '*'}")
                self.collections = chosen
                self._api = api

        try:
            asyncio.run(run())
        except HttpError as err:
            raise InputError(f"{err.url}: {err.reason}") from None

    def units(self) -> Iterator[PagesUnit]:
        t0 = time.monotonic()
        thread = threading.Thread(target=self._thread, name="stacbatch-api", daemon=True)
        thread.start()
        try:
            taken = 0
            segment = self.options.segment_items
            finished = False
            while not finished:
                got = self._queue.get()
                pages: list[tuple[str, bytes | list[Any], tuple[int, ...] | None]] = []
                done: list[str] = []
                count = 0
                while True:  # the pages already waiting go out together: fewer, larger units for the workers
                    if got is _DONE:
                        self.exhausted = self._error is None
                        finished = True
                        break
                    if isinstance(got, _Complete):
                        done.append(got.collection)
                    else:
                        label, page, q, nxt, children = got
                        self._frontier[q] = (self._frontier[q][0], nxt)  # what to ask next, once this page is staged
                        for child, cid, request in children:  # a split window: its parts replace it in the same step
                            self._frontier[child] = (cid, request)
                        if page is not None and page[2]:
                            pages.append((label, page[0], page[1]))
                            count += page[2]
                        if count >= _UNIT_ITEMS or (segment and taken + count >= segment):
                            break
                    try:
                        got = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if pages or done:
                    yield PagesUnit(self.url, pages, tuple(done))
                    taken += count
                if segment and taken >= segment:
                    break  # a checkpoint: the caller commits, then goes on from pending()
        finally:
            self._stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    thread.join(0.05)
            self.stats.seconds = time.monotonic() - t0
        if self._error is not None:
            raise self._error

    def pending(self) -> list[dict[str, Any]]:
        """The queries not finished by the pages taken so far, each as the request that continues it."""
        return [{"collection": cid, "request": req} for cid, req in self._frontier.values() if req is not None]

    def _thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # surfaced in units()
            self._error = err
        finally:
            self._put(_DONE)

    def _put(self, value: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    async def _main(self) -> None:
        o = self.options
        async with Http(
            concurrency=o.concurrency,
            rate_limit=o.rate_limit,
            max_retries=o.max_retries,
            timeout=o.timeout,
            headers=o.headers,
            rate_state=self._rate_state,
        ) as http:
            try:
                assert self._api is not None, "prepare() first"
                api, chosen = self._api, self.collections
                params: dict[str, Any] = {}
                if o.bbox:
                    params["bbox"] = o.bbox
                if o.datetime:
                    params["datetime"] = o.datetime
                if o.ids:
                    params["ids"] = o.ids
                budget = [o.max_items]
                per = o.windows if o.windows is not None else max(1, -(-2 * o.concurrency // len(chosen)))
                queries = [
                    (str(c["id"]), window)
                    for c in chosen
                    for window in (time_windows(c, o.datetime, per) if not o.ids else [o.datetime])
                ]
                async with asyncio.TaskGroup() as tg:
                    self._tasks = tg
                    if o.requests:  # --retry-failed / --resume: exactly those requests, and the pages after them
                        for r in o.requests:
                            self._open_query(str(r["collection"]))
                        for r in o.requests:
                            tg.create_task(
                                self._tracked(
                                    str(r["collection"]),
                                    self._query(http, api, str(r["collection"]), budget, start=r["request"]),
                                )
                            )
                    else:
                        for cid, _w in queries:
                            self._open_query(cid)
                        for cid, w in queries:
                            sub = {**params, "datetime": w} if w else params
                            tg.create_task(self._tracked(cid, self._query(http, api, cid, budget, sub)))
            finally:
                self.stats.requests = http.stats.requests
                self.stats.retries = http.stats.retries
                self.stats.request_starts = http.stats.starts

    def _seen_at_edge(self, cid: str, feature: Any, edges: tuple[_dt.datetime | None, _dt.datetime | None]) -> bool:
        """Whether this item was already taken from the adjacent window (``edges``: its bounds): only items touching
        a window edge can come twice, so only they are remembered (memory stays small however many items).
        ``feature``: a decoded feature or a ``FeatureIndex``."""
        lo, hi = edges
        if lo is None and hi is None:
            return False
        if isinstance(feature, tuple):
            ident, dt, first, last = (_text(t) for t in feature)
        elif isinstance(feature, dict) and isinstance(feature.get("properties"), dict):
            props = feature["properties"]
            ident, dt, first, last = feature.get("id"), *(props.get(k) for k in _TIME_KEYS)
        else:
            return False
        start = _instant(dt or first)
        end = _instant(dt or last)
        if start is None or end is None:
            return False
        touches = (lo is not None and start <= lo <= end) or (hi is not None and start <= hi <= end)
        if not touches:
            return False
        key = (cid, str(ident))
        if key in self._edge:
            return True
        self._edge.add(key)
        return False

    async def _query(
        self,
        http: Http,
        api: Any,
        cid: str,
        budget: list[int | None],
        params: dict[str, Any] | None = None,
        start: dict[str, Any] | None = None,
        q: int | None = None,
    ) -> None:
        """One query's pages, in order. ``start``: continue from that request (resume, retry). A fresh query whose
        first page counts more pages than ``window_pages`` is replaced by parts of its time window instead."""
        fresh = start is None
        if start is not None:
            method, url, body = str(start["method"]), str(start["url"]), start.get("body")
            params = {"datetime": _window_of(start)}
        else:
            params = params or {}
            method, url, body = search_request(api, cid, params, self.options.limit, self.options.method)
        window = params.get("datetime")
        edges = tuple(_instant(v) for v in window.split("/", 1)) if window and "/" in window else (None, None)
        self.stats.queries += 1
        if q is None:
            q = next(self._query_ids)
            self._frontier[q] = (cid, {"method": method, "url": url, "body": body, "headers": None})
        first, taken, matched = True, 0, None
        try:
            async for req_url, doc, body_bytes, nxt in pages(http, method, url, body, index=not self.decoded_features):
                if self._stop.is_set():
                    return
                raw = doc.get("features") or []
                count = doc.get("numberMatched", (doc.get("context") or {}).get("matched"))
                if first and fresh and isinstance(count, int):
                    matched = count
                    if await self._split(http, api, cid, budget, params, q, req_url, raw, count):
                        return
                    self.stats.matched = (self.stats.matched or 0) + count  # the total to expect
                first = False
                taken += len(raw)
                # a short page that completes the count ends the query: no request for the empty page after it
                done = not raw or (matched is not None and taken >= matched and len(raw) < self.options.limit)
                keep = [i for i, f in enumerate(raw) if not self._seen_at_edge(cid, f, edges)]  # type: ignore[arg-type]
                self.stats.pages += 1
                if budget[0] is not None:
                    keep = keep[: budget[0]]
                    budget[0] -= len(keep)
                self.stats.items += len(keep)
                over = budget[0] is not None and budget[0] <= 0
                chosen = None if len(keep) == len(raw) else tuple(keep)
                # the page's bytes when the kernel can read them (no per-item Python), else the decoded features
                page = (raw if self.decoded_features else body_bytes, chosen, len(keep))
                await asyncio.to_thread(self._put, (req_url, page, q, None if done or over else nxt, []))
                if over or done:
                    return
        except HttpError as err:
            self.stats.failed_queries += 1
            rec = {"source": self.url, "collection": cid, **err.record()}
            self.failures.append(rec)
            await asyncio.to_thread(self._put, (err.url, None, q, None, []))  # recorded: --retry-failed takes it up

    async def _split(
        self,
        http: Http,
        api: Any,
        cid: str,
        budget: list[int | None],
        params: dict[str, Any],
        q: int,
        req_url: str,
        raw: list[Any],
        count: int,
    ) -> bool:
        """Replace query ``q`` by parts of its window when its count says it is too deep to page through alone. The
        first page is dropped (its items come again from the parts): one request spent, many gained in parallel."""
        o = self.options
        per_page = max(1, len(raw) or o.limit)  # servers may cap the page size below the limit asked
        depth = -(-count // per_page)
        if not o.window_pages or o.ids or depth <= o.window_pages:
            return False
        coll = next((c for c in self.collections if str(c.get("id")) == cid), {})
        parts = split_window(params.get("datetime"), coll, min(1000, -(-depth // o.window_pages)))
        if not parts:
            return False
        self.stats.splits += 1
        children = []
        for part in parts:
            sub = {**params, "datetime": part}
            method, url, body = search_request(api, cid, sub, o.limit, o.method)
            children.append((next(self._query_ids), sub, {"method": method, "url": url, "body": body, "headers": None}))
        # the parts are registered (for checkpoints) by the same message that closes the split query
        await asyncio.to_thread(self._put, (req_url, None, q, None, [(c, cid, r) for c, _, r in children]))
        for _child, _sub, _ in children:
            self._open_query(cid)
        for child, sub, _ in children:
            self._tasks.create_task(self._tracked(cid, self._query(http, api, cid, budget, sub, q=child)))
        return True

    def _open_query(self, cid: str) -> None:
        self._open[cid] = self._open.get(cid, 0) + 1

    async def _tracked(self, cid: str, query: Awaitable[None]) -> None:
        """Run one query of collection ``cid``; when it was the collection's last open one, tell the stager that
        the collection is complete (after its last page, in the same queue), so that its partitions can be written
        while other collections are still being fetched. The parts of a split window open before it closes."""
        await query
        self._open[cid] -= 1
        if not self._open[cid]:
            await asyncio.to_thread(self._put, _Complete(cid))


def _window_of(request: dict[str, Any]) -> str | None:
    """The datetime filter of a saved request (POST body or GET query): edge de-duplication needs it on resume."""
    body = request.get("body")
    if isinstance(body, dict):
        value = body.get("datetime")
        return value if isinstance(value, str) else None
    values = parse_qs(urlsplit(str(request.get("url"))).query).get("datetime")
    return values[0] if values else None


_TIME_KEYS = ("datetime", "start_datetime", "end_datetime")


def _text(token: bytes | None) -> Any:
    """A JSON value text from a ``FeatureIndex``, decoded (a plain string without the decoder)."""
    if token is None:
        return None
    if token[:1] == b'"' and b"\\" not in token:
        return token[1:-1].decode("utf-8", "replace")
    try:
        return _json.loads(token)
    except ValueError:
        return None
