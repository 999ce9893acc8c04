"""The options of a STAC API source, its statistics, and the checks of the filter values users give."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from stacbatch.api._http import MAX_PAGE_BYTES, MAX_RETRY_AFTER
from stacbatch.api._stac import MAX_PAGES
from stacbatch.errors import InputError

#: the page size asked when none is given: servers cap it silently (CMR-STAC at 100, stac-fastapi at 10,000), so
#: servers that allow large pages give them in few requests; CMR-STAC refuses more than 5000
AUTO_LIMIT = 1000
#: the page size asked again when a server refuses ``AUTO_LIMIT`` (HTTP 400): the spec's usual maximum
FALLBACK_LIMIT = 100


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
    #: hosts (``--header-host``) that get ``headers`` besides the API's own origin
    header_hosts: list[str] = field(default_factory=list)
    #: items asked per page; None: ``AUTO_LIMIT`` (servers cap it silently), ``FALLBACK_LIMIT`` if it is refused
    limit: int | None = None
    method: str = "auto"
    #: time windows per collection (None: enough to keep ``concurrency`` requests busy; 1: no splitting)
    windows: int | None = None
    #: failure records of an earlier run (collection, request): fetch from exactly those requests on
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: stop after about this many items so that the caller can commit a checkpoint (0: never)
    segment_items: int = 0
    #: a window whose count (numberMatched) says more pages than this is split further (0: never)
    window_pages: int = 10
    #: pages one query may take (a server that pages forever stops there, as a failed query)
    max_pages: int = MAX_PAGES
    #: the longest Retry-After waited for; a longer one fails the request at once
    max_retry_after: float = MAX_RETRY_AFTER
    #: the largest response accepted
    max_page_bytes: int = MAX_PAGE_BYTES
    #: splitting by count is bounded: parts made per collection in all, and splits of splits
    max_split_parts: int = 1024
    max_split_depth: int = 4
    #: set by the source: the requests a fresh load starts from (what a checkpoint names when it is interrupted
    #: before its first commit)
    started: list[dict[str, Any]] = field(default_factory=list)


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
    #: queries whose items received differ from the server's count (numberMatched / context.matched)
    count_mismatches: int = 0
    #: the first few of them: collection, window, matched, received
    mismatch_examples: list[dict[str, Any]] = field(default_factory=list)
    #: the page size asked (None until the first query)
    limit: int | None = None


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
