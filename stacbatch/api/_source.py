"""A STAC API as a load source: collections fetched concurrently on an asyncio loop in a background thread, pages
handed to the loader through a bounded queue (memory stays flat however many items), as parse units.

A page that still fails after its retries is recorded (request, status, body excerpt) and its query stops; the
other queries go on, and the load ends as partial. So does a query whose next links loop or page past
``max_pages``. Every next link is followed: the server's count only decides splitting (bounded) and progress, and a
count that disagrees with the items received is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import itertools
import queue
import threading
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from stacbatch.api._http import Http, HttpError
from stacbatch.api._options import AUTO_LIMIT, FALLBACK_LIMIT, ApiOptions, ApiStats
from stacbatch.api._stac import (
    can_search_together,
    list_collections,
    match_collections,
    open_api,
    pages,
    search_request,
)
from stacbatch.api._windows import parse_instant as _instant
from stacbatch.api._windows import split_window, time_windows
from stacbatch.engine import _json
from stacbatch.engine._headers import HeaderScope
from stacbatch.engine._units import PagesUnit
from stacbatch.errors import InputError
from stacbatch.kernel._scan import AVAILABLE as _KERNEL

_DONE = object()


@dataclass(frozen=True)
class _Complete:
    """Queue message: every query of ``collection`` has ended (all its pages were queued before this)."""

    collection: str


#: items per parse unit at most (pages already fetched are grouped up to this)
_UNIT_ITEMS = 2000


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
        #: the page size asked by fresh queries (falls back once when the server refuses the automatic one)
        self._page_limit = options.limit or AUTO_LIMIT
        #: (collection, filters) of the queries a fresh load starts with
        self._initial: list[tuple[str, dict[str, Any]]] = []
        #: window parts made by splitting, per collection (bounded by ``max_split_parts``)
        self._parts: dict[str, int] = {}
        #: query key -> its collections, for a search over several small collections at once (keys of those start
        #: with NUL; every other key is a collection id)
        self._members: dict[str, tuple[str, ...]] = {}
        #: the fetching thread's loop and main task: cancelled (waits and all) when the consumer stops
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main_task: asyncio.Task[Any] | None = None

    @property
    def decoded_features(self) -> bool:
        """Pages go on as decoded features (no kernel to read their bytes, nor workers to send bytes to), so the
        fetcher decodes them whole; otherwise it decodes only what paging needs (``indexed_page``)."""
        return not (self.raw_pages or _KERNEL)

    def _http(self, **kwargs: Any) -> Http:
        o = self.options
        return Http(
            timeout=o.timeout,
            headers=o.headers,
            rate_limit=o.rate_limit,
            rate_state=self._rate_state,
            header_scope=HeaderScope.of(self.url, o.header_hosts),
            max_retry_after=o.max_retry_after,
            max_page_bytes=o.max_page_bytes,
            **kwargs,
        )

    def prepare(self) -> None:
        """Open the API and resolve the collections before anything is written: an unreachable URL, a response that
        is not a STAC API or an unknown collection fails here, with one line."""

        async def run() -> None:
            o = self.options
            async with self._http(max_retries=min(2, o.max_retries)) as http:
                # one request at a time means one: no speculative /collections then
                api = await open_api(http, self.url, speculate=o.concurrency > 1)
                wanted = sorted({c for r in o.requests for c in _collections_of(r)}) if o.requests else o.collections
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
            # also on an interrupt (Ctrl-C): the fetcher stops now, even inside a Retry-After or backoff wait
            self._stop.set()
            self._cancel()
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
        return [{**self._label(cid), "request": req} for cid, req in self._frontier.values() if req is not None]

    def _label(self, key: str) -> dict[str, Any]:
        """How records name a query's collections: ``collection``, and ``collections`` for a grouped search."""
        members = self._members.get(key)
        return {"collection": key} if members is None else {"collection": members[0], "collections": list(members)}

    def _key(self, record: dict[str, Any]) -> str:
        """The query key of a saved request (``pending``, a failure record), registering a group's members."""
        members = _collections_of(record)
        if len(members) == 1:
            return members[0]
        key = f"\x00group{len(self._members)}"
        self._members[key] = tuple(members)
        return key

    def _search(self, api: Any, key: str, params: dict[str, Any], limit: int) -> tuple[str, str, Any]:
        return search_request(api, self._members.get(key, key), params, limit, self.options.method)

    def _cancel(self) -> None:
        loop, task = self._loop, self._main_task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # the loop has ended already
                loop.call_soon_threadsafe(task.cancel)

    def _thread(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # surfaced in units(); a cancel asked for by units() is no error
            if not (self._stop.is_set() and isinstance(err, asyncio.CancelledError)):
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

    def _note_started(self, api: Any) -> None:
        """``options.started``: the first request of each fresh query, at the page size now asked."""
        o = self.options
        self.stats.limit = self._page_limit
        o.started = [
            {**self._label(cid), "request": _request(*self._search(api, cid, p, self._page_limit))}
            for cid, p in self._initial
        ]

    async def _main(self) -> None:
        self._loop, self._main_task = asyncio.get_running_loop(), asyncio.current_task()
        if self._stop.is_set():  # stopped before the loop was known
            return
        o = self.options
        async with self._http(concurrency=o.concurrency, max_retries=o.max_retries) as http:
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
                if (
                    not o.requests
                    and o.windows is None
                    and len(chosen) > 2 * o.concurrency
                    and can_search_together(api, o.method)
                ):
                    # many collections: a search per collection cost a request each (153 small collections from
                    # pgstac took 153); searches over groups of them keep the requests in flight, and a group
                    # whose count says it is deep is split into its collections (then their time windows)
                    groups = 2 * o.concurrency
                    for n in range(groups):
                        self._members[f"\x00group{n}"] = tuple(str(c["id"]) for c in chosen[n::groups])
                    queries = [(key, o.datetime) for key in self._members]
                if not o.requests:
                    self._initial = [(cid, {**params, "datetime": w} if w else params) for cid, w in queries]
                    self._note_started(api)
                async with asyncio.TaskGroup() as tg:
                    self._tasks = tg
                    if o.requests:  # --retry-failed / --resume: exactly those requests, and the pages after them
                        keyed = [(self._key(r), r) for r in o.requests]
                        for key, _r in keyed:
                            self._open_query(key)
                        for key, r in keyed:
                            tg.create_task(self._tracked(key, self._query(http, api, key, budget, start=r["request"])))
                    else:
                        for cid, _p in self._initial:
                            self._open_query(cid)
                        for cid, sub in self._initial:
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
        depth: int = 0,
        parent_count: int | None = None,
    ) -> None:
        """One query's pages, in order, every ``next`` link followed. ``start``: continue from that request (resume,
        retry). A fresh query whose first page counts more pages than ``window_pages`` is replaced by parts of its
        time window instead (``depth``: splits above it; ``parent_count``: the count of the window it is part of)."""
        fresh = start is None
        limit = self._page_limit
        if start is not None:
            method, url, body = str(start["method"]), str(start["url"]), start.get("body")
            params = {"datetime": _window_of(start)}
        else:
            params = params or {}
            method, url, body = self._search(api, cid, params, limit)
        window = params.get("datetime")
        # a grouped search is never cut into time windows (it splits into its collections): no edges to share
        edges: tuple[_dt.datetime | None, ...] = (None, None)
        if window and "/" in window and cid not in self._members:
            edges = tuple(_instant(v) for v in window.split("/", 1))
        self.stats.queries += 1
        if q is None:
            q = next(self._query_ids)
            self._frontier[q] = (cid, _request(method, url, body))
        first, received, matched = True, 0, None
        try:
            index = not self.decoded_features
            async for req_url, doc, body_bytes, nxt in pages(
                http, method, url, body, index=index, max_pages=self.options.max_pages
            ):
                if self._stop.is_set():
                    return
                raw = doc.get("features") or []
                count = doc.get("numberMatched", (doc.get("context") or {}).get("matched"))
                if first and fresh and isinstance(count, int) and not isinstance(count, bool):
                    matched = count
                    if await self._split(http, api, cid, budget, params, q, req_url, raw, count, depth, parent_count):
                        return
                    self.stats.matched = (self.stats.matched or 0) + count  # the total to expect (progress only)
                first = False
                received += len(raw)
                # the count is a hint: a short page that "completes" it ends nothing (servers cap pages silently
                # and counts are estimates); the query ends on an empty page or no next link
                done = not raw or nxt is None
                keep = [i for i, f in enumerate(raw) if not self._seen_at_edge(cid, f, edges)]  # type: ignore[arg-type]
                self.stats.pages += 1
                # live for progress (the load's bar), final again when the fetch ends
                self.stats.requests, self.stats.retries = http.stats.requests, http.stats.retries
                if budget[0] is not None:
                    keep = keep[: budget[0]]
                    budget[0] -= len(keep)
                self.stats.items += len(keep)
                over = budget[0] is not None and budget[0] <= 0
                chosen = None if len(keep) == len(raw) else tuple(keep)
                # the page's bytes when the kernel can read them (no per-item Python), else the decoded features
                page = (raw if self.decoded_features else body_bytes, chosen, len(keep))
                await asyncio.to_thread(self._put, (req_url, page, q, None if done or over else nxt, []))
                if over:
                    return
                if done:
                    break
            if matched is not None and received != matched:
                self._mismatch(cid, window, matched, received)
        except HttpError as err:
            if fresh and first and self._refused_limit(err, limit):
                # the automatic page size was refused (CMR-STAC refuses more than 5000): the usual one, from now on
                self._page_limit = FALLBACK_LIMIT
                self._note_started(api)
                self.stats.queries -= 1
                retry = self._search(api, cid, params, FALLBACK_LIMIT)
                self._frontier[q] = (cid, _request(*retry))
                await self._query(http, api, cid, budget, params, None, q, depth, parent_count)
                return
            self.stats.failed_queries += 1
            rec = {"source": self.url, **self._label(cid), **err.record()}
            self.failures.append(rec)
            await asyncio.to_thread(self._put, (err.url, None, q, None, []))  # recorded: --retry-failed takes it up

    def _refused_limit(self, err: HttpError, limit: int) -> bool:
        return self.options.limit is None and limit > FALLBACK_LIMIT and err.status in (400, 422)

    def _mismatch(self, cid: str, window: str | None, matched: int, received: int) -> None:
        self.stats.count_mismatches += 1
        if len(self.stats.mismatch_examples) < 5:
            name = ",".join(self._members.get(cid, (cid,)))
            self.stats.mismatch_examples.append(
                {"collection": name, "datetime": window, "matched": matched, "received": received}
            )

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
        depth: int,
        parent_count: int | None,
    ) -> bool:
        """Replace query ``q`` by parts of its window when its count says it is too deep to page through alone. The
        first page is dropped (its items come again from the parts): one request spent, many gained in parallel.

        Bounded, because the count may be an estimate or a lie (10^9 made 592 split requests and no items): a part
        whose count did not shrink with its window is paged, not split again; parts per split, splits of splits and
        parts per collection are capped. Past the caps a window is simply paged."""
        o = self.options
        per_page = max(1, len(raw) or self._page_limit)  # servers may cap the page size below the limit asked
        deep = -(-count // per_page)
        members = self._members.get(cid)
        if members is not None and o.window_pages and deep > o.window_pages:
            # a deep group: one query per collection instead, each judged (and split by time) on its own
            per_collection = [(next(self._query_ids), m, params) for m in members]
            await asyncio.to_thread(
                self._put,
                (
                    req_url,
                    None,
                    q,
                    None,
                    [(c, m, _request(*self._search(api, m, p, self._page_limit))) for c, m, p in per_collection],
                ),
            )
            self.stats.splits += 1
            for _child, m, _p in per_collection:
                self._open_query(m)
            for child, m, p in per_collection:
                self._tasks.create_task(self._tracked(m, self._query(http, api, m, budget, p, q=child)))
            return True
        if not o.window_pages or o.ids or deep <= o.window_pages:
            return False
        if (parent_count is not None and count >= parent_count) or depth >= o.max_split_depth:
            return False
        room = o.max_split_parts - self._parts.get(cid, 0)
        wanted = min(-(-deep // o.window_pages), max(2, 4 * o.concurrency), room)
        if wanted < 2:
            return False
        coll = next((c for c in self.collections if str(c.get("id")) == cid), {})
        parts = split_window(params.get("datetime"), coll, wanted)
        if not parts:
            return False
        self._parts[cid] = self._parts.get(cid, 0) + len(parts)
        self.stats.splits += 1
        children = []
        for part in parts:
            sub = {**params, "datetime": part}
            request = _request(*self._search(api, cid, sub, self._page_limit))
            children.append((next(self._query_ids), sub, request))
        # the parts are registered (for checkpoints) by the same message that closes the split query
        await asyncio.to_thread(self._put, (req_url, None, q, None, [(c, cid, r) for c, _, r in children]))
        for _child, _sub, _ in children:
            self._open_query(cid)
        for child, sub, _ in children:
            task = self._query(http, api, cid, budget, sub, q=child, depth=depth + 1, parent_count=count)
            self._tasks.create_task(self._tracked(cid, task))
        return True

    def _open_query(self, key: str) -> None:
        for cid in self._members.get(key, (key,)):
            self._open[cid] = self._open.get(cid, 0) + 1

    async def _tracked(self, cid: str, query: Awaitable[None]) -> None:
        """Run one query of collection ``cid``; when it was the collection's last open one, tell the stager that
        the collection is complete (after its last page, in the same queue), so that its partitions can be written
        while other collections are still being fetched. The parts of a split window open before it closes."""
        await query
        for member in self._members.get(cid, (cid,)):
            self._open[member] -= 1
            if not self._open[member]:
                await asyncio.to_thread(self._put, _Complete(member))


def _collections_of(record: dict[str, Any]) -> list[str]:
    """The collections a saved request asks for: ``collections`` (a grouped search), else ``collection``."""
    several = record.get("collections")
    if isinstance(several, list) and several:
        return [str(c) for c in several]
    return [str(record["collection"])]


def _request(method: str, url: str, body: dict[str, Any] | None) -> dict[str, Any]:
    return {"method": method, "url": url, "body": body, "headers": None}


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
