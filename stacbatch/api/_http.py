"""HTTP for STAC APIs: one aiohttp session, a per-host request rate limit, retries with exponential backoff and
jitter on 429, 5xx, timeouts and connection errors, also while a body is read (``Retry-After`` honoured up to
a cap), response bodies capped in size, and the user's headers sent only to the origin they were given for.

Header values never reach logs, errors or run records: only header names do.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from stacbatch.engine import _json
from stacbatch.engine._headers import HeaderScope
from stacbatch.errors import InputError

RETRY_STATUS = {429, 500, 502, 503, 504}
#: the longest Retry-After waited for by default; a longer one fails the request at once (86400 s waited a day)
MAX_RETRY_AFTER = 120.0
#: the largest response body read by default
MAX_PAGE_BYTES = 256 * 1024 * 1024
MAX_REDIRECTS = 10


@dataclass
class HttpStats:
    requests: int = 0
    retries: int = 0
    #: request start times (monotonic), for rate checks in tests and the summary
    starts: list[float] = field(default_factory=list)


class HttpError(Exception):
    """A request that failed for good (after retries, or a status that is not worth retrying)."""

    def __init__(self, method: str, url: str, status: int | None, reason: str, body: Any = None) -> None:
        super().__init__(reason)
        self.method = method
        self.url = url
        self.status = status
        self.reason = reason
        self.body = body

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"request": {"method": self.method, "url": self.url}, "reason": self.reason}
        if self.body is not None:
            rec["request"]["body"] = self.body
        if self.status is not None:
            rec["status"] = self.status
        return rec


class RateLimiter:
    """At most ``rate`` request starts per second per host (evenly spaced, so no burst exceeds it)."""

    def __init__(self, rate: float | None, state: dict[str, float] | None = None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        #: host -> earliest next start; shared between the clients of one source (each event loop has its own)
        self._next: dict[str, float] = state if state is not None else {}
        self._paused: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def wait(self, host: str) -> None:
        """Return when a request to ``host`` may start. Spacing is measured from the actual start (after the sleep
        woke up), so a late wake-up never lets two later requests bunch up."""
        async with self._lock:
            delay = max(self._next.get(host, 0.0), self._paused.get(host, 0.0)) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.interval:
                self._next[host] = time.monotonic() + self.interval

    def pause(self, host: str, seconds: float) -> None:
        """A 429 with Retry-After speaks for the whole host: no request to it starts before then."""
        self._paused[host] = max(self._paused.get(host, 0.0), time.monotonic() + seconds)


class Http:
    def __init__(
        self,
        *,
        concurrency: int = 8,
        rate_limit: float | None = None,
        max_retries: int = 5,
        timeout: float = 60.0,
        headers: dict[str, str] | None = None,
        backoff: float = 0.5,
        backoff_cap: float = 30.0,
        rate_state: dict[str, float] | None = None,
        header_scope: HeaderScope | None = None,
        max_retry_after: float = MAX_RETRY_AFTER,
        max_page_bytes: int = MAX_PAGE_BYTES,
    ) -> None:
        if concurrency < 1:
            raise InputError(f"--concurrency must be at least 1, got {concurrency}")
        if rate_limit is not None and rate_limit <= 0:
            raise InputError(f"--rate-limit must be positive, got {rate_limit}")
        self.max_retries = max_retries
        self.timeout = timeout
        self.base_headers = {"User-Agent": "stacbatch", "Accept": "application/geo+json, application/json"}
        #: the user's headers (``-H``): sent only where ``header_scope`` allows
        self.headers = dict(headers or {})
        #: None: the origin of the first URL asked (the one the headers were given for)
        self.header_scope = header_scope
        self.max_retry_after = max_retry_after
        self.max_page_bytes = max_page_bytes
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.limiter = RateLimiter(rate_limit, rate_state)
        self.slots = asyncio.Semaphore(concurrency)
        self.stats = HttpStats()
        self._session: aiohttp.ClientSession | None = None
        self._concurrency = concurrency

    async def __aenter__(self) -> Http:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            connector=aiohttp.TCPConnector(limit=self._concurrency),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def json(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        decode: Callable[[bytes], Any] = _json.loads,
        *,
        retry: bool = True,
        offload: bool = False,
    ) -> tuple[Any, bytes]:
        """The decoded JSON document and its raw bytes; raises ``HttpError`` once retries are spent. ``decode``
        raises ``ValueError`` for a body that is not JSON."""
        doc, raw, _headers = await self.json_with_headers(
            method, url, body, headers, decode, retry=retry, offload=offload
        )
        return doc, raw

    async def json_with_headers(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        decode: Callable[[bytes], Any] = _json.loads,
        *,
        retry: bool = True,
        offload: bool = False,
    ) -> tuple[Any, bytes, dict[str, str]]:
        """``json`` plus the response headers (a ``Link`` header may carry the next page). ``retry=False``: one
        attempt (a speculative request). ``offload``: decode on a thread (a decoder that releases the GIL), so
        the event loop sends the other queries' next requests meanwhile. ``headers``: the server's own (a next
        link's), sent wherever it points; the user's go only where ``header_scope`` allows."""
        if self.header_scope is None:
            self.header_scope = HeaderScope.of(url)
        attempt = 0
        while True:
            status: int | None = None
            retry_after: float | None = None
            retryable = True
            try:
                async with self.slots:  # a slot first, then the rate limit: the request goes out right after it
                    status, raw, got_headers, retry_after = await self._fetch(method, url, body, headers)
                if status == 200:
                    try:
                        doc = await asyncio.to_thread(decode, raw) if offload else decode(raw)
                        return doc, raw, got_headers
                    except ValueError:  # a body cut short reads as bad JSON too: asked again, like a 5xx
                        reason = "response is not JSON (is this a STAC API?)"
                else:
                    reason = f"HTTP {status}: {_excerpt(raw)}"
                    retryable = status in RETRY_STATUS
            except TimeoutError:
                reason = f"timed out after {self.timeout:g} s"
            except aiohttp.ClientError as err:  # refused, reset, or cut off while the body was read
                reason = f"connection failed: {type(err).__name__}: {err}"
            if not retryable:
                raise HttpError(method, url, status, reason, body)
            if retry_after is not None and retry_after > self.max_retry_after:
                raise HttpError(
                    method,
                    url,
                    status,
                    f"{reason} (the server asks to wait {_seconds(retry_after)} before retrying, more than "
                    f"--max-retry-after {self.max_retry_after:g} s: not waiting)",
                    body,
                )
            host = urlsplit(url).netloc
            if status == 429 and retry_after is not None:  # every request to the host waits, retried or not
                self.limiter.pause(host, retry_after)
            if attempt >= (self.max_retries if retry else 0):
                raise HttpError(method, url, status, f"{reason} (after {attempt} retries)", body)
            attempt += 1
            self.stats.retries += 1
            delay = min(self.backoff_cap, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            if retry_after is not None:
                delay = max(delay, retry_after)
            await asyncio.sleep(delay)  # cancelled at once when the load is interrupted

    async def _fetch(
        self, method: str, url: str, body: Any, link_headers: dict[str, str] | None
    ) -> tuple[int, bytes, dict[str, str], float | None]:
        """One request, redirects followed here rather than by aiohttp (which keeps every header but Authorization
        on a redirect to another origin): (status, body, response headers, Retry-After seconds)."""
        assert self._session is not None and self.header_scope is not None
        for _hop in range(MAX_REDIRECTS + 1):
            await self.limiter.wait(urlsplit(url).netloc)
            self.stats.requests += 1
            self.stats.starts.append(time.monotonic())
            sent = {**self.base_headers, **(self.headers if self.header_scope.allows(url) else {})}
            async with self._session.request(
                method,
                url,
                json=body if method == "POST" else None,
                headers={**sent, **(link_headers or {})},
                allow_redirects=False,
            ) as resp:
                location = resp.headers.get("Location")
                if resp.status in (301, 302, 303, 307, 308) and location:
                    if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                        method, body = "GET", None  # as browsers and requests do
                    url = urljoin(url, location)
                    continue
                raw = await self._read(resp, method, url, body)
                return resp.status, raw, dict(resp.headers), _retry_after(resp.headers.get("Retry-After"))
        raise HttpError(method, url, None, f"more than {MAX_REDIRECTS} redirects", body)

    async def _read(self, resp: aiohttp.ClientResponse, method: str, url: str, body: Any) -> bytes:
        """The body, in chunks, refused past ``max_page_bytes`` (a page of a gigabyte took several in memory)."""
        cap = self.max_page_bytes
        too_big = (
            f"response larger than --max-page-bytes {cap:,} bytes; ask for smaller pages (--limit) or raise the cap"
        )
        if resp.content_length is not None and resp.content_length > cap:
            raise HttpError(method, url, resp.status, too_big, body)
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(1 << 20):
            size += len(chunk)
            if size > cap:
                raise HttpError(method, url, resp.status, too_big, body)
            chunks.append(chunk)
        return b"".join(chunks)


def _seconds(value: float) -> str:
    return "ever" if math.isinf(value) else f"{value:,.0f} s"


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return None if math.isnan(seconds) else max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _excerpt(raw: bytes, size: int = 200) -> str:
    """The start of an error body, on one line; ``{"errors": [...]}`` (CMR-STAC) and ``{"description": ...}``
    (stac-fastapi) bodies shown by their message."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        if isinstance(doc.get("errors"), list):
            return "; ".join(str(e) for e in doc["errors"])[:size]
        for key in ("description", "detail", "message"):
            message = doc.get(key)
            if isinstance(message, str):
                return message[:size]
    text = raw[: size * 2].decode("utf-8", "replace")
    return " ".join(text.split())[:size] or "(empty body)"
