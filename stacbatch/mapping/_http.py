"""Records from a JSON HTTP API (not STAC) for a mapping: pages fetched with the STAC loader's HTTP client (retries
with backoff on 429/5xx, ``Retry-After``, the per-host rate limit, headers with ``${ENV}``), the records taken
from a path in each response and spilled as NDJSON to a temporary file that the mapping then reads like any other.

Paging (``source.http`` in the mapping), one of:
  ``next: a.b``        a next URL at that path in the body (relative URLs resolved against the page's URL);
  ``link: true``       an RFC 8288 ``Link: <url>; rel="next"`` response header;
  ``offset: {param, limit_param, limit}``   offset/limit parameters, until a short or empty page;
  ``cursor: {path, param}``   a cursor at that path in the body, sent back as that query parameter.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import orjson

from stacbatch.api._http import Http, HttpError
from stacbatch.errors import InputError

_LINK = re.compile(r'<([^>]*)>\s*;[^,]*?\brel="?next"?', re.IGNORECASE)


def dig(doc: Any, path: str | None) -> Any:
    """The value at a dotted path (``data``, ``data.data``, ``pagination.next``), or None."""
    if not path:
        return doc
    for part in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(part)
    return doc


def _with_params(url: str, params: dict[str, Any]) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    query.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items()})
    return urlunsplit(parts._replace(query=urlencode(query)))


_ENVELOPES = ("data", "results", "items", "features", "records")


def _records(doc: Any, path: str | None, url: str) -> list[Any]:
    """The records of one response: at ``path``, else in the first usual envelope member that is a list, else the
    response itself (a list of records, or one record)."""
    if path:
        found = dig(doc, path)
    elif isinstance(doc, dict):
        found = next((doc[name] for name in _ENVELOPES if isinstance(doc.get(name), list)), doc)
    else:
        found = doc
    if isinstance(found, dict):
        found = [found]  # a single record (e.g. /location-proofs/{uid})
    if not isinstance(found, list):
        raise InputError(f"{url}: no record list at {path or 'the top level'!r}; set source.records in the mapping")
    return found


async def _fetch(url: str, http_opts: dict[str, Any], source: dict[str, Any], out: Any, max_pages: int) -> int:
    paging = source.get("http") or {}
    records_path = source.get("records")
    offset = paging.get("offset")
    params = dict(paging.get("params") or {})
    if offset:
        params.setdefault(offset.get("limit_param", "limit"), offset.get("limit", 100))
        params.setdefault(offset.get("param", "offset"), 0)
    count = 0
    async with Http(**http_opts) as http:
        page_url: str | None = _with_params(url, params) if params else url
        seen: set[str] = set()
        while page_url is not None:
            if page_url in seen:  # a server that sends the same next link again would loop forever
                raise InputError(f"{page_url}: the API sent the same next page twice; check source.http paging")
            seen.add(page_url)
            doc, _raw, headers = await http.json_with_headers("GET", page_url)
            records = _records(doc, records_path, page_url)
            for record in records:
                out.write(orjson.dumps(record) + b"\n")
            count += len(records)
            if not records or len(seen) >= max_pages:
                break
            if "next" in paging:
                nxt = dig(doc, str(paging["next"]))
                page_url = urljoin(page_url, nxt) if isinstance(nxt, str) and nxt else None
            elif paging.get("link"):
                m = _LINK.search(headers.get("Link", ""))
                page_url = urljoin(page_url, m.group(1)) if m else None
            elif offset:
                size = int(offset.get("limit", 100))
                param = str(offset.get("param", "offset"))
                current = int(dict(parse_qsl(urlsplit(page_url).query)).get(param, 0))
                page_url = None if len(records) < size else _with_params(page_url, {param: current + len(records)})
            elif paging.get("cursor"):
                cursor = dig(doc, str(paging["cursor"]["path"]))
                page_url = _with_params(page_url, {paging["cursor"]["param"]: cursor}) if cursor else None
            else:
                page_url = None
    return count


def fetch_records(
    url: str, source: dict[str, Any], http_opts: dict[str, Any], path: str, max_pages: int = 2**62
) -> int:
    """Fetch the pages of ``url`` (every one, or the first ``max_pages``) into the NDJSON file ``path``; the number
    of records. One-line errors."""
    with open(path, "wb") as out:
        try:
            return asyncio.run(_fetch(url, http_opts, source, out, max_pages))
        except HttpError as err:
            raise InputError(f"{err.url}: {err.reason}") from None
