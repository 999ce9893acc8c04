"""STAC API v1.0.0 over ``Http``: the landing page, collections (paged), and item pages that follow ``next`` links
exactly as the spec allows (GET or POST, ``body``, ``merge``, ``headers``); stop on no next link or an empty page.
Page URLs are never synthesised: the token in a next link is the server's business.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin

import orjson

from stacbatch.api._http import Http, HttpError
from stacbatch.engine import _json
from stacbatch.errors import InputError
from stacbatch.kernel._scan import page_index


@dataclass
class Api:
    url: str
    landing: dict[str, Any]
    search_get: str | None = None
    search_post: str | None = None
    collections_url: str | None = None
    children: list[str] = field(default_factory=list)
    #: the first page of ``{url}/collections``, asked for together with the landing page (see ``open_api``)
    early: asyncio.Task[tuple[Any, bytes] | None] | None = None


def _links(doc: dict[str, Any], rel: str) -> list[dict[str, Any]]:
    return [ln for ln in doc.get("links") or [] if isinstance(ln, dict) and ln.get("rel") == rel and ln.get("href")]


async def open_api(http: Http, url: str, *, speculate: bool = False) -> Api:
    """The landing page. ``speculate``: ask for ``/collections`` at the same time, once, without retries; its first
    page is used only when the landing page's ``data`` link names that very URL (as it does on every STAC API
    seen), and saves a round trip (0.2-1 s against CMR-STAC) before the first item request. It asks for
    ``COLLECTIONS_LIMIT`` collections a page: stac-fastapi pages ``/collections`` 10 at a time by default (16 round
    trips for 153 collections); a server that refuses the parameter is asked again without it."""
    guess = urljoin(url.rstrip("/") + "/", "collections")
    early = (
        asyncio.create_task(_quietly(http.json("GET", f"{guess}?limit={COLLECTIONS_LIMIT}", retry=False)))
        if speculate
        else None
    )
    try:
        doc, _ = await http.json("GET", url)
    except HttpError as err:
        if early is not None:
            early.cancel()
        raise InputError(f"{url}: not reachable as a STAC API: {err.reason}") from None
    if not isinstance(doc, dict) or doc.get("type") not in ("Catalog", None) or "links" not in doc:
        raise InputError(f"{url}: not a STAC API landing page (no Catalog with links)")
    api = Api(url, doc)
    for ln in _links(doc, "search"):
        href = urljoin(url, ln["href"])
        method = str(ln.get("method") or "GET").upper()
        if method == "POST":
            api.search_post = href
        else:
            api.search_get = href
    data = _links(doc, "data")
    if data:
        api.collections_url = urljoin(url, data[0]["href"])
    api.children = [urljoin(url, ln["href"]) for ln in _links(doc, "child")]
    if early is not None and api.collections_url == guess:
        api.early = early
    elif early is not None:
        early.cancel()
    return api


#: collections asked for a page of ``/collections`` by the speculative first request (within CMR-STAC's 5000)
COLLECTIONS_LIMIT = 1000


async def _quietly(request: Awaitable[tuple[Any, bytes]]) -> tuple[Any, bytes] | None:
    try:
        return await request
    except HttpError:
        return None


def indexed_page(raw: bytes) -> Any:
    """An item page decoded but for its features, which come as ``FeatureIndex`` tuples (what paging and window
    edges need: decoding ~100 items a page into dicts was most of the fetching thread's time, and delayed every
    response behind it); decoded whole when the kernel is not there or does not take the page."""
    found = page_index(raw)
    if found is None:
        return _json.loads(raw)
    head, index = found
    doc = _json.loads(head)
    if isinstance(doc, dict):
        doc["features"] = index
    return doc


#: pages one query may take by default: a server that pages forever (or by a count of 10^9) is stopped there
MAX_PAGES = 100_000


class PageGuard:
    """The requests of one query so far: a ``next`` link that asks for one of them again (itself, or back to an
    earlier page) would page forever, as would a query past ``max_pages``. Digests, not URLs, are kept: 16 bytes
    a page however long the tokens."""

    def __init__(self, max_pages: int = MAX_PAGES) -> None:
        self.max_pages = max_pages
        self._seen: set[bytes] = set()

    def check(self, method: str, url: str, body: Any) -> None:
        key = hashlib.blake2b(
            f"{method} {url} ".encode() + orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=16
        ).digest()
        if key in self._seen:
            raise HttpError(
                method,
                url,
                None,
                f"paging loop: after {len(self._seen):,} page(s) the next link asks for an earlier page again; "
                "the server's paging is broken, so this query stops here",
                body,
            )
        if len(self._seen) >= self.max_pages:
            raise HttpError(
                method, url, None, f"more than --max-pages {self.max_pages:,} pages in one query; stopped here", body
            )
        self._seen.add(key)


async def pages(
    http: Http,
    method: str,
    url: str,
    body: dict[str, Any] | None,
    *,
    index: bool = False,
    first: tuple[Any, bytes] | None = None,
    max_pages: int = MAX_PAGES,
) -> AsyncIterator[tuple[str, dict[str, Any], bytes, dict[str, Any] | None]]:
    """(request URL, page, its bytes, the request that returns the next page or None) for each page of one query.
    ``index``: item pages, decoded by ``indexed_page``; ``first``: the first response, already received. Every
    ``next`` link is followed (counts are not trusted to end a query); a loop or too many pages raise
    ``HttpError``."""
    decode = indexed_page if index else _json.loads
    guard = PageGuard(max_pages)
    request: dict[str, Any] | None = {"method": method, "url": url, "body": body, "headers": None}
    while request is not None:
        guard.check(request["method"], request["url"], request["body"])
        if first is not None:
            (doc, raw), first = first, None
        else:
            doc, raw = await http.json(
                request["method"], request["url"], request["body"], request["headers"], decode, offload=index
            )
        if not isinstance(doc, dict):
            raise HttpError(request["method"], request["url"], 200, "page is not a JSON object", request["body"])
        nxt = next_request(request, doc)
        yield request["url"], doc, raw, nxt
        features = doc.get("features", doc.get("collections"))
        if not features:  # some servers keep a next link on the last non-empty page
            return
        request = nxt


def next_request(prev: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any] | None:
    links = _links(doc, "next")
    if not links:
        return None
    ln = links[0]
    method = str(ln.get("method") or "GET").upper()
    href = urljoin(prev["url"], ln["href"])
    headers = ln.get("headers") if isinstance(ln.get("headers"), dict) else None
    body = None
    if method == "POST":
        body = ln.get("body")
        if ln.get("merge") and isinstance(prev.get("body"), dict):
            body = {**prev["body"], **(body or {})}
            if headers and prev.get("headers"):
                headers = {**prev["headers"], **headers}
        elif body is None:
            body = prev.get("body")
    return {"method": method, "url": href, "body": body, "headers": headers}


async def list_collections(http: Http, api: Api) -> list[dict[str, Any]]:
    """Every collection of the API, following ``/collections`` paging; for a catalog of catalogs (CMR-STAC's root),
    each child API's collections (child links paged too)."""
    if api.collections_url is None:
        out: list[dict[str, Any]] = []
        for child in await _child_urls(http, api):
            sub = await open_api(http, child)
            if sub.collections_url is not None:
                out += await list_collections(http, sub)
        return out
    found: list[dict[str, Any]] = []
    first, url = None, api.collections_url
    if api.early is not None:
        first = await api.early  # None when it failed (or the server refused the limit): asked again, plainly
        api.early = None
        if first is not None:  # set only when the data link is the guessed URL: this is the URL it was asked at
            url = f"{url}?limit={COLLECTIONS_LIMIT}"
    async for _url, doc, _raw, _nxt in pages(http, "GET", url, None, first=first):
        found += [c for c in doc.get("collections") or [] if isinstance(c, dict)]
    return found


async def _child_urls(http: Http, api: Api) -> list[str]:
    urls = list(api.children)
    doc = api.landing
    guard = PageGuard()
    guard.check("GET", api.url, None)
    while True:  # CMR-STAC pages its catalogs' child links (100 a page) with its own next link
        nxt = _links(doc, "next")
        if not nxt:
            return urls
        href = urljoin(api.url, nxt[0]["href"])
        guard.check("GET", href, None)
        doc, _ = await http.json("GET", href)
        urls += [urljoin(api.url, ln["href"]) for ln in _links(doc, "child")]


def match_collections(
    available: list[dict[str, Any]], patterns: list[str], *, strict: bool = True
) -> list[dict[str, Any]]:
    """Collections whose id matches any pattern (globs allowed). A pattern without wildcards that matches nothing
    is an error (a typo would otherwise load nothing)."""
    if not patterns:
        return available
    chosen = [c for c in available if any(fnmatch.fnmatchcase(str(c.get("id")), p) for p in patterns)]
    if strict:
        ids = {str(c.get("id")) for c in available}
        missing = [p for p in patterns if not any(ch in p for ch in "*?[") and p not in ids]
        if missing:
            raise InputError(f"--collection {', '.join(missing)}: no such collection in the API ({len(ids)} listed)")
    return chosen


def search_request(
    api: Api, collection: str | tuple[str, ...], params: dict[str, Any], limit: int, prefer: str = "auto"
) -> tuple[str, str, dict[str, Any] | None]:
    """The first request for one collection's items (or several collections' together, by search only): POST
    /search if advertised, else GET /search, else ``/collections/{id}/items``."""
    members = [collection] if isinstance(collection, str) else list(collection)
    body: dict[str, Any] = {"collections": members, "limit": limit, **params}
    if api.search_post and prefer in ("auto", "POST"):
        return "POST", api.search_post, body
    if api.search_get and prefer in ("auto", "GET"):
        return "GET", api.search_get + "?" + urlencode(_query(body), safe=",:/"), None
    if api.collections_url and len(members) == 1:
        base = api.collections_url.rstrip("/") + "/" + _quote_id(members[0]) + "/items"
        query = {k: v for k, v in body.items() if k != "collections"}
        return "GET", base + "?" + urlencode(_query(query), safe=",:/"), None
    raise InputError(f"{api.url}: the API advertises neither item search nor /collections")


def can_search_together(api: Api, prefer: str = "auto") -> bool:
    """Whether one search may ask for several collections' items (item search, not ``/collections/{id}/items``)."""
    return bool((api.search_post and prefer in ("auto", "POST")) or (api.search_get and prefer in ("auto", "GET")))


def _quote_id(cid: str) -> str:
    from urllib.parse import quote

    return quote(cid, safe="")


def _query(body: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in body.items():
        if isinstance(v, list):
            out[k] = ",".join(str(x) for x in v)
        else:
            out[k] = str(v)
    return out
