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
RUNS = "runs"
AUDIT = "audit"
TOMBSTONES = "tombstones"
TMP = "_tmp"

TIME_BUCKETS = ("none", "year", "month")
_BUCKET_KEY = {"year": "year", "month": "month"}


#: bytes of an encoded name at most: file systems allow 255 per path component, and the longest name made from an
#: encoded id adds 18 (``.<hash>.json``) or 11 (``collection=``)
MAX_NAME = 200
_KEEP = MAX_NAME - 18


def encode(value: str) -> str:
    """Path-safe form of a collection or item id (hive-style percent encoding; plain ids stay as they are).

    A long one is cut and ends in ``%%`` and a hash of the whole id: still one name per id, and it fits the file
    system (``%%`` never occurs in percent encoding, so a cut name equals no other id's encoding). Nothing reads ids
    back from paths: the stage's columns hold them.
    """
    out = quote(value, safe="-_.~+@,")
    out = "%2E" + out[1:] if out.startswith(".") else out
    if len(out) <= MAX_NAME:
        return out
    head = out[:_KEEP]
    cut = head.rfind("%", len(head) - 2)  # not inside a %XX escape
    if cut >= 0:
        head = head[:cut]
    return f"{head}%%{xxhash.xxh3_64_hexdigest(value.encode('utf-8', 'surrogatepass'))}"


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
