"""``discover URL``: the collections of a STAC API (or of every provider under a CMR-STAC style root), filtered by id
pattern, provider, temporal overlap and bbox intersection."""

from __future__ import annotations

import asyncio
import datetime as _dt
import fnmatch
from typing import Any

from stacbatch.api._http import Http, HttpError
from stacbatch.api._stac import list_collections, open_api
from stacbatch.errors import InputError


def _ts(value: Any, end: bool) -> _dt.datetime:
    if not isinstance(value, str) or value in ("", ".."):
        return _dt.datetime.max.replace(tzinfo=_dt.UTC) if end else _dt.datetime.min.replace(tzinfo=_dt.UTC)
    text = value if len(value) > 10 else value + ("T23:59:59Z" if end else "T00:00:00Z")
    try:
        parsed = _dt.datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return _dt.datetime.max.replace(tzinfo=_dt.UTC) if end else _dt.datetime.min.replace(tzinfo=_dt.UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.UTC)


def _overlaps_time(coll: dict[str, Any], interval: str) -> bool:
    lo_s, _, hi_s = interval.partition("/")
    lo, hi = _ts(lo_s, False), _ts(hi_s or lo_s, True)
    spans = ((coll.get("extent") or {}).get("temporal") or {}).get("interval") or [[None, None]]
    for span in spans[:1]:  # the first interval is the overall extent
        if isinstance(span, list) and len(span) == 2 and _ts(span[0], False) <= hi and lo <= _ts(span[1], True):
            return True
    return False


def _intersects(coll: dict[str, Any], bbox: list[float]) -> bool:
    w, s, e, n = (bbox[0], bbox[1], bbox[2], bbox[3]) if len(bbox) == 4 else (bbox[0], bbox[1], bbox[3], bbox[4])
    boxes = ((coll.get("extent") or {}).get("spatial") or {}).get("bbox") or [[-180, -90, 180, 90]]
    b = boxes[0]
    if not isinstance(b, list) or len(b) not in (4, 6):
        return True
    bw, bs, be, bn = (b[0], b[1], b[2], b[3]) if len(b) == 4 else (b[0], b[1], b[3], b[4])
    if bw > be:  # crosses the antimeridian
        return bool(bs <= n and s <= bn and (w <= be or e >= bw))
    return bool(bs <= n and s <= bn and bw <= e and w <= be)


async def _discover(url: str, http: Http, providers: list[str]) -> list[tuple[str, dict[str, Any]]]:
    api = await open_api(http, url, speculate=True)
    if api.collections_url is not None:
        return [(str(api.landing.get("id", "")), c) for c in await list_collections(http, api)]
    out: list[tuple[str, dict[str, Any]]] = []
    from stacbatch.api._stac import _child_urls

    for child in await _child_urls(http, api):
        name = child.rstrip("/").rsplit("/", 1)[-1]
        if providers and not any(fnmatch.fnmatchcase(name, p) for p in providers):
            continue
        try:
            sub = await open_api(http, child)
        except InputError:
            continue
        if sub.collections_url is not None:
            out += [(name, c) for c in await list_collections(http, sub)]
    return out


def discover(
    url: str,
    *,
    patterns: list[str] | None = None,
    providers: list[str] | None = None,
    datetime: str | None = None,
    bbox: list[float] | None = None,
    http_options: dict[str, Any] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(provider, Collection JSON) pairs that pass every filter, in the API's order."""

    async def run() -> list[tuple[str, dict[str, Any]]]:
        async with Http(**(http_options or {})) as http:
            try:
                return await _discover(url, http, providers or [])
            except HttpError as err:
                raise InputError(f"{err.url}: {err.reason}") from None

    found = asyncio.run(run())
    out = []
    for provider, coll in found:
        cid = str(coll.get("id"))
        if patterns and not any(fnmatch.fnmatchcase(cid, p) for p in patterns):
            continue
        if datetime and not _overlaps_time(coll, datetime):
            continue
        if bbox and not _intersects(coll, bbox):
            continue
        out.append((provider, coll))
    return out
