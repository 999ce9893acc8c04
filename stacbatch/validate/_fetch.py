"""``stacbatch schemas fetch``: download schemas, and every document their ``$ref``s name, into the local cache.

This is the only place where validation goes to the network, and only when asked.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import orjson

from stacbatch.errors import InputError
from stacbatch.validate._schemas import SchemaSource, SchemaStore, add_to_cache, key

TIMEOUT = 30
#: at most this many documents per fetch (a schema's references form a small graph; this stops a runaway)
MAX_DOCUMENTS = 500


def _refs(node: Any, base: str, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            out.add(key(urljoin(base, ref)))
        for v in node.values():
            _refs(v, base, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, base, out)


def _get(url: str) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise InputError(f"{url}: fetch takes http(s) URLs; a local schema goes in a --schemas folder")
    req = urllib.request.Request(url, headers={"Accept": "application/schema+json, application/json"})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            data: bytes = resp.read()
    except urllib.error.HTTPError as err:
        raise InputError(f"{url}: the server answered {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise InputError(
            f"{url}: cannot fetch it ({reason}); validation works offline from --schemas folders"
        ) from None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InputError(f"{url}: not JSON, so not a schema") from None
    if not isinstance(doc, dict | bool):
        raise InputError(f"{url}: a schema is a JSON object")
    return data


def fetch(urls: list[str], cache: Path, source: SchemaSource | None = None) -> tuple[list[str], list[str]]:
    """Fetch ``urls`` and the documents they reference into ``cache``; documents the folders or the cache
    already have are not fetched again. Returns (fetched, already there)."""
    store = SchemaStore(source or SchemaSource((), str(cache)))
    todo = [key(u) for u in urls]
    seen: set[str] = set()
    got: dict[str, bytes] = {}
    present: list[str] = []
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        if len(seen) > MAX_DOCUMENTS:
            raise InputError(f"schemas fetch: more than {MAX_DOCUMENTS} documents referenced; stopped")
        doc = store.get(url)
        if doc is not None:
            present.append(url)
        else:
            data = _get(url)
            got[url] = data
            doc = orjson.loads(data)
        refs: set[str] = set()
        _refs(doc, url, refs)
        todo.extend(sorted(refs - seen))
    return (add_to_cache(cache, got) if got else []), sorted(present)
