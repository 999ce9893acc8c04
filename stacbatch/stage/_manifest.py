"""The manifest: the one file that says what the stage holds. Replacing it is the commit point of every write."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import orjson

from stacbatch.engine import _fs
from stacbatch.engine._layout import MANIFEST, TIME_BUCKETS, now_rfc3339
from stacbatch.errors import StageError

FORMAT = "stacbatch-stage"
#: 2: content hashes are taken of the canonical stream (_json.py), not of sorted-key JSON text.
#: 3: data files may carry typed property columns (``properties.<name>``) and collections a column plan; stages of
#: format 2 are read and written as they are (their collections read properties from the text).
FORMAT_VERSION = 3
READABLE = (2, 3)

DEFAULT_SETTINGS: dict[str, Any] = {
    # Collections with at least time_bucket_min_items items at their first write are split by this time bucket;
    # smaller ones keep a single partition. Fixed per collection once chosen (recorded in "collections"). 50k, not
    # 5k: a query opens every file (~0.3 ms each), and 5k split a 16k-item collection into 13 files of ~1,200 rows
    # (100k items: 84 files, queries 3-4x slower than one file; 6 files: as fast). First loads of new collections
    # wait longer to know their layout (1M items: ~21 -> 22-25 s).
    "time_bucket": "year",
    "time_bucket_min_items": 50_000,
    "row_group_rows": 10_000,
    "file_max_rows": 100_000,
    "file_max_bytes": 128 * 1024 * 1024,
    # Files a write replaces stay this long for readers that opened an older version (then the next write removes
    # them): a query over a snapshot never meets a file that a concurrent writer deleted under it.
    "retain_replaced_seconds": 900,
    # Properties made typed columns per collection at most (the rest stays in the item text; `info` lists them).
    "max_property_columns": 256,
}


@dataclass
class Manifest:
    version: int = 0
    created: str = field(default_factory=now_rfc3339)
    updated: str = field(default_factory=now_rfc3339)
    settings: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SETTINGS))
    #: collection id -> {"partitioning": "none"|"year"|"month", "json": relative path or None}
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: one entry per data file: path, collection, bucket, rows, bytes, datetime_min/max, bbox, run
    files: list[dict[str, Any]] = field(default_factory=list)
    last_run: dict[str, Any] | None = None
    #: audit log files (one per run that changed something): path, run, rows
    audit: list[dict[str, Any]] = field(default_factory=list)
    #: tombstone files (one per run that deleted something): path, run, rows
    tombstones: list[dict[str, Any]] = field(default_factory=list)
    #: files that earlier versions referenced and this one does not, kept for readers of those versions until
    #: ``since`` (epoch seconds) + the ``retain_replaced_seconds`` setting: path, since, version (last one using it)
    retired: list[dict[str, Any]] = field(default_factory=list)
    #: static catalog trees as loads walked them: node key -> type, id, parent, children, json (see _catalogs.py)
    catalogs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the Parquet table of items that hang from a tree node other than their collection, or None
    catalog_items: str | None = None
    #: the verdicts of the last validation run (the ``validation`` view): path, run_id, rows, or None
    validation: dict[str, Any] | None = None

    def partitions(self) -> list[dict[str, Any]]:
        """One entry per partition folder: collection, bucket, files, rows, bytes."""
        parts: dict[str, dict[str, Any]] = {}
        for f in self.files:
            folder = f["path"].rsplit("/", 1)[0]
            p = parts.setdefault(
                folder,
                {
                    "path": folder,
                    "collection": f["collection"],
                    "bucket": f.get("bucket"),
                    "files": 0,
                    "rows": 0,
                    "bytes": 0,
                },
            )
            p["files"] += 1
            p["rows"] += f["rows"]
            p["bytes"] += f["bytes"]
        return sorted(parts.values(), key=lambda p: p["path"])

    def to_json(self) -> bytes:
        from stacbatch.kernel._rows import STAGE_SCHEMA

        return orjson.dumps(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "version": self.version,
                "created": self.created,
                "updated": self.updated,
                "settings": self.settings,
                "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in STAGE_SCHEMA],
                "counts": {"items": self.item_count(), "files": len(self.files), "collections": len(self.collections)},
                "collections": self.collections,
                "partitions": self.partitions(),
                "files": self.files,
                "last_run": self.last_run,
                "audit": self.audit,
                "tombstones": self.tombstones,
                "retired": self.retired,
                "catalogs": self.catalogs,
                "catalog_items": self.catalog_items,
                "validation": self.validation,
            },
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
        )

    def referenced(self) -> set[str]:
        """Every file this version reads: data, Collection and Catalog JSON, the catalogs' item table, audit and
        tombstones (not the retired ones)."""
        refs = {f["path"] for f in self.files}
        refs.update(m["json"] for m in self.collections.values() if m.get("json"))
        refs.update(m["json"] for m in self.catalogs.values() if m.get("json"))
        if self.catalog_items:
            refs.add(self.catalog_items)
        if self.validation:
            refs.add(self.validation["path"])
        refs.update(e["path"] for e in self.audit)
        refs.update(e["path"] for e in self.tombstones)
        return refs

    def retire(self, before: Manifest, now: float) -> None:
        """Record the files ``before`` read that this version does not, and forget those retired long enough ago
        (the next cleanup deletes them)."""
        keep = self.referenced()
        grace = float(self.settings["retain_replaced_seconds"])
        retired = {r["path"]: r for r in self.retired if now - float(r["since"]) < grace and r["path"] not in keep}
        for path in sorted(before.referenced() - keep) if grace > 0 else ():
            retired.setdefault(path, {"path": path, "since": round(now, 3), "version": before.version})
        self.retired = sorted(retired.values(), key=lambda r: r["path"])

    def copy(self) -> Manifest:
        return copy.deepcopy(self)

    def files_of(self, collection: str) -> list[dict[str, Any]]:
        return [f for f in self.files if f["collection"] == collection]

    def files_by_collection(self) -> dict[str, list[dict[str, Any]]]:
        """Collection -> its files, in one pass (``files_of`` per collection is quadratic on large stages)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for f in self.files:
            out.setdefault(f["collection"], []).append(f)
        return out

    def item_count(self, collection: str | None = None) -> int:
        return sum(f["rows"] for f in self.files if collection is None or f["collection"] == collection)


def read_manifest(fs: Any, root: str) -> Manifest | None:
    path = _fs.join(root, MANIFEST)
    try:
        with fs.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise StageError(f"{root}: is a file, not a stage folder; give --stage a folder") from None
    except IsADirectoryError:
        raise StageError(f"{path}: is a folder, not a stage manifest; this is not a stage") from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as err:
        raise StageError(f"{path}: the manifest is not valid JSON ({err}); restore it from a backup") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StageError(f"{path}: not a stacbatch stage manifest")
    if doc.get("format_version") == 1:
        raise StageError(
            f"{path}: this stage was written by an older stacbatch (format 1, other content hashes); "
            "emit it with that version (emit --format ndjson) and load the output into a new stage"
        )
    if doc.get("format_version") not in READABLE:
        raise StageError(
            f"{path}: stage format version {doc.get('format_version')} is not supported by this stacbatch "
            f"(supports {', '.join(map(str, READABLE))}); upgrade stacbatch"
        )
    settings = dict(DEFAULT_SETTINGS)
    settings.update(doc.get("settings") or {})
    return Manifest(
        version=int(doc["version"]),
        created=doc["created"],
        updated=doc["updated"],
        settings=settings,
        collections=doc.get("collections") or {},
        files=doc.get("files") or [],
        last_run=doc.get("last_run"),
        audit=doc.get("audit") or [],
        tombstones=doc.get("tombstones") or [],
        retired=doc.get("retired") or [],
        catalogs=doc.get("catalogs") or {},  # absent in stages written before catalogs were staged
        catalog_items=doc.get("catalog_items"),
        validation=doc.get("validation"),  # absent in stages never validated
    )


def write_manifest(fs: Any, root: str, manifest: Manifest) -> None:
    if manifest.settings["time_bucket"] not in TIME_BUCKETS:
        raise StageError(f"time bucket must be one of {', '.join(TIME_BUCKETS)}")
    manifest.updated = now_rfc3339()
    _fs.atomic_write_bytes(fs, _fs.join(root, MANIFEST), manifest.to_json())
