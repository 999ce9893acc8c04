"""Where things live inside a stage folder. Paths in the manifest are relative to the stage root."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from urllib.parse import quote

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


def encode(value: str) -> str:
    """Path-safe form of a collection or item id (hive-style percent encoding; plain ids stay as they are)."""
    out = quote(value, safe="-_.~+@,")
    return "%2E" + out[1:] if out.startswith(".") else out


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
