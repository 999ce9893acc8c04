"""Where things live inside a stage folder. Paths in the manifest are relative to the stage root."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from urllib.parse import quote

import xxhash

MANIFEST = "manifest.json"
LOCK = ".stacbatch.lock"
ITEMS = "items"
COLLECTIONS = "collections"
CATALOGS = "catalogs"
RUNS = "runs"
AUDIT = "audit"
TOMBSTONES = "tombstones"
TMP = "_tmp"

TIME_BUCKETS = ("none", "year", "month")
_BUCKET_KEY = {"year": "year", "month": "month"}


#: bytes of an encoded name at most: file systems allow 255 per path component, and the longest name made from an
#: encoded id adds 18 (``.<hash>.json``) or 11 (``collection=``)
MAX_NAME = 200
_CUT = MAX_NAME - 21  # room for ``!`` and 20 hex digits of hash


def encode(value: str, reserved: frozenset[str] = frozenset()) -> str:
    """Path-safe form of a collection or item id (hive-style percent encoding; plain ids stay as they are): no
    ``/``, no leading dot, no control characters, so nothing leaves its folder.

    A name over :data:`MAX_NAME` bytes, or one of ``reserved``, is cut and ends in ``!`` and a hash of the whole
    id: stable, fits the file system, and equal to no other id's name (percent encoding never writes ``!``).
    Nothing reads ids back from paths: the stage's columns hold them.
    """
    out = quote(value, safe="-_.~+@,")
    out = "%2E" + out[1:] if out.startswith(".") else out
    if len(out) <= MAX_NAME and out not in reserved:
        return out
    head = out[:_CUT]
    cut = head.rfind("%", len(head) - 2)  # not inside a %XX escape
    if cut >= 0:
        head = head[:cut]
    return f"{head}!{xxhash.xxh3_128_hexdigest(value.encode('utf-8', 'surrogatepass'))[:20]}"


def partition_dir(collection: str, scheme: str, bucket: str | None) -> str:
    base = f"{ITEMS}/collection={encode(collection)}"
    if scheme == "none" or bucket is None:
        return base
    return f"{base}/{_BUCKET_KEY[scheme]}={bucket}"


def new_run_id() -> str:
    """Sortable by time, unique across processes."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ") + "-" + secrets.token_hex(3)


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
