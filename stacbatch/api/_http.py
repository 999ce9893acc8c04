"""HTTP for STAC APIs: one aiohttp session, a per-host request rate limit, retries with exponential backoff and
jitter on 429, 5xx, timeouts and connection errors (``Retry-After`` honoured), headers with ``${ENV}`` values.

Header values never reach logs, errors or run records: only header names do.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from stacbatch import _json
from stacbatch.errors import InputError

RETRY_STATUS = {429, 500, 502, 503, 504}


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
    ) -> None:
        if concurrency < 1:
            raise InputError(f"--concurrency must be at least 1, got {concurrency}")
        if rate_limit is not None and rate_limit <= 0:
            raise InputError(f"--rate-limit must be positive, got {rate_limit}")
        self.max_retries = max_retries
        self.timeout = timeout
        self.headers = {
            "User-Agent": "stacbatch",
            "Accept": "application/geo+json, application/json",
            **(headers or {}),
        }
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
        the event loop sends the other queries' next requests meanwhile."""
        assert self._session is not None
        host = urlsplit(url).netloc
        attempt = 0
        while True:
            status: int | None = None
            retry_after: float | None = None
            try:
                async with self.slots:  # a slot first, then the rate limit: the request goes out right after it
                    await self.limiter.wait(host)
                    self.stats.requests += 1
                    self.stats.starts.append(time.monotonic())
                    async with self._session.request(
                        method,
                        url,
                        json=body if method == "POST" else None,
                        headers={**self.headers, **(headers or {})},
                    ) as resp:
                        status = resp.status
                        raw = await resp.read()
                        retry_after = _retry_after(resp.headers.get("Retry-After"))
                        got_headers = dict(resp.headers)
                if status == 200:
                    try:
                        doc = await asyncio.to_thread(decode, raw) if offload else decode(raw)
                        return doc, raw, got_headers
                    except ValueError:
                        raise HttpError(
                            method, url, status, "response is not JSON (is this a STAC API?)", body
                        ) from None
                reason = f"HTTP {status}: {_excerpt(raw)}"
            except TimeoutError:
                reason = f"timed out after {self.timeout:g} s"
            except aiohttp.ClientError as err:
                reason = f"connection failed: {type(err).__name__}: {err}"
            if status is not None and status not in RETRY_STATUS:
                raise HttpError(method, url, status, reason, body)
            if status == 429 and retry_after is not None:  # every request to the host waits, retried or not
                self.limiter.pause(host, retry_after)
            if attempt >= (self.max_retries if retry else 0):
                raise HttpError(method, url, status, f"{reason} (after {attempt} retries)", body)
            attempt += 1
            self.stats.retries += 1
            delay = min(self.backoff_cap, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)
            if retry_after is not None:
                delay = max(delay, retry_after)
            await asyncio.sleep(delay)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
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
