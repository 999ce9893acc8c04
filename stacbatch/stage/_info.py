"""What ``stacbatch info`` reports: mostly from the manifest's file statistics, properties from the data."""

from __future__ import annotations

from typing import Any

from stacbatch.engine import _sql
from stacbatch.stage._manifest import FORMAT_VERSION
from stacbatch.stage._stage import Stage


def stage_info(stage: Stage, properties: bool = True) -> dict[str, Any]:
    m = stage.manifest
    names = sorted({f["collection"] for f in m.files} | set(m.collections))
    props: dict[str, dict[str, int]] = {}
    if properties and m.files:
        for coll, key, n in stage.sql(_sql.load("properties_present")).fetchall():
            props.setdefault(coll, {})[key] = n
    out = []
    by_collection = m.files_by_collection()
    for cid in names:
        files = by_collection.get(cid, [])
        boxes = [f["bbox"] for f in files if f.get("bbox")]
        lows = [f["datetime_min"] for f in files if f.get("datetime_min")]
        highs = [f["datetime_max"] for f in files if f.get("datetime_max")]
        parts = sorted({f["path"].rsplit("/", 1)[0].split("/", 1)[1] for f in files})
        meta = m.collections.get(cid, {})
        entry: dict[str, Any] = {
            "id": cid,
            "items": sum(f["rows"] for f in files),
            "datetime_min": min(lows) if lows else None,
            "datetime_max": max(highs) if highs else None,
            "bbox": [
                min(b[0] for b in boxes),
                min(b[1] for b in boxes),
                max(b[2] for b in boxes),
                max(b[3] for b in boxes),
            ]
            if boxes
            else None,
            "partitioning": meta.get("partitioning") or "none",
            "partitions": parts,
            "files": len(files),
            "bytes": sum(f["bytes"] for f in files),
            "has_collection_json": bool(meta.get("json")),
        }
        if properties:
            entry["properties"] = props.get(cid, {})
        out.append(entry)
    return {
        "path": stage.path,
        "format_version": FORMAT_VERSION,
        "version": m.version,
        "updated": m.updated,
        "items": m.item_count(),
        "files": len(m.files),
        "bytes": sum(f["bytes"] for f in m.files),
        "settings": m.settings,
        "last_run": m.last_run,
        "collections": out,
        "catalogs": catalog_tree(m.catalogs),
    }


def catalog_tree(nodes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The staged static catalog trees, nested: per node type, id and children (empty for a stage without)."""

    def node(key: str) -> dict[str, Any]:
        entry = nodes[key]
        return {"type": entry["type"], "id": entry["id"], "children": [node(c) for c in entry["children"]]}

    return [node(k) for k, e in nodes.items() if e["parent"] is None]
