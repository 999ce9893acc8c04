"""Queryables: what the stage's typed property columns are, per collection (``info``), as a STAC API Queryables
JSON Schema (``stacbatch queryables``), and declared ones read from a file (``load --queryables``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stacbatch.errors import InputError
from stacbatch.stage._columns import TYPES
from stacbatch.stage._stage import Stage
from stacbatch.stage._structs import fields_of, is_struct, struct_type, valid_type
from stacbatch.stage._view import property_columns, shown_name

#: the view type -> its JSON Schema (STAC API - Filter, Queryables)
_SCHEMA: dict[str, dict[str, Any]] = {
    "bigint": {"type": "integer"},
    "double": {"type": "number"},
    "boolean": {"type": "boolean"},
    "string": {"type": "string"},
    "timestamp": {"type": "string", "format": "date-time"},
}
#: queryables every STAC API Filter server names; the stage has them as core columns
_CORE: dict[str, dict[str, Any]] = {
    "id": {"title": "Item ID", "type": "string"},
    "collection": {"title": "Collection ID", "type": "string"},
    "geometry": {"title": "Item geometry", "$ref": "https://geojson.org/schema/Geometry.json"},
    "datetime": {"title": "Acquisition time", "type": "string", "format": "date-time"},
}


def json_schema_of(typ: str) -> dict[str, Any]:
    if is_struct(typ):
        fields = {k: json_schema_of(t) for k, t in fields_of(typ).items()}
        return {"type": "object", "properties": fields, "additionalProperties": False}
    if typ.startswith("list<"):
        return {"type": "array", "items": dict(_SCHEMA[typ[5:-1]])}
    return dict(_SCHEMA[typ])


def type_of_schema(name: str, schema: Any, where: str) -> str:
    """A declared queryable's column type from its JSON Schema (or a type name such as ``double``)."""
    if isinstance(schema, str):
        if is_struct(schema) and valid_type(schema):
            return schema
        if schema not in TYPES:
            raise InputError(f"{where}: queryable {name!r}: type {schema!r} is not one of {', '.join(sorted(TYPES))}")
        return schema
    if isinstance(schema, dict):
        kind, fmt = schema.get("type"), schema.get("format")
        if kind == "object" and isinstance(schema.get("properties"), dict):
            fields = {k: type_of_schema(f"{name}.{k}", v, where) for k, v in schema["properties"].items()}
            typ = struct_type({k: "string" if t == "timestamp" else t for k, t in fields.items()})
            if valid_type(typ):
                return typ
        if kind == "array" and isinstance(schema.get("items"), dict):
            inner = type_of_schema(name, schema["items"], where)
            if not inner.startswith("list<") and inner != "timestamp":
                return f"list<{inner}>"
        for typ, known in _SCHEMA.items():
            if known.get("type") == kind and known.get("format") == (fmt if fmt == "date-time" else None):
                return typ
    raise InputError(
        f"{where}: queryable {name!r}: give a type (integer, number, boolean, string, string with format date-time, "
        f"an array of one of these, or an object of at most 32 of the scalar ones), got {schema!r}"
    )


def read_declared(path: str) -> dict[str, dict[str, str]]:
    """Declared queryables from a file: a STAC API Queryables JSON Schema (for every collection, or the one its
    ``$id`` names as ``.../collections/<id>/queryables``), or ``{collection or "*": {name: type or schema}}`` in
    JSON or YAML. Core fields (id, datetime, geometry...) are columns already, and entries without a ``type`` (a
    ``$ref`` to an extension's schema) leave the type to the data: both are skipped."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise InputError(f"{path}: cannot read the queryables file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not JSON or YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a JSON Schema or a mapping of collection -> queryables")
    if isinstance(doc.get("properties"), dict):  # a Queryables JSON Schema
        ident = str(doc.get("$id") or "")
        parts = ident.rstrip("/").split("/")
        scope = parts[-2] if len(parts) >= 3 and parts[-1] == "queryables" and parts[-3] == "collections" else "*"
        doc = {scope: doc["properties"]}
    out: dict[str, dict[str, str]] = {}
    for scope, fields in doc.items():
        if not isinstance(fields, dict):
            raise InputError(f"{path}: {scope!r}: expected a mapping of property name -> type")
        out[str(scope)] = {
            str(name): type_of_schema(str(name), schema, path)
            for name, schema in fields.items()
            if str(name).lower() not in _CORE
            and name not in ("start_datetime", "end_datetime", "bbox")
            # a server's entry without a type ({"$ref": ...} to an extension schema) declares nothing here
            and not (isinstance(schema, dict) and "type" not in schema)
        }
    return out


def queryables(stage: Stage) -> dict[str, dict[str, Any]]:
    """Per collection: its typed columns (type, items with a value as its files' reports count them, values that
    did not fit the type), the names
    kept in the text only and why, and whether the collection reads every property from the text: ``legacy``
    (written before columns existed; ``stacbatch upgrade`` rewrites it) or ``closed`` (more names kept in the
    text than a plan lists)."""
    m = stage.manifest
    out: dict[str, dict[str, Any]] = {}
    by_collection = m.files_by_collection()
    for cid in sorted(by_collection):
        meta = m.collections.get(cid) or {}
        plan = meta.get("columns") or {}
        misses: dict[str, int] = {}
        filled: dict[str, int] = {}
        assets: dict[str, Any] = {"items": 0, "not_of_type": {}, "files_without": 0}
        for f in by_collection[cid]:
            report = f.get("columns") or {}
            got = report.get("assets")
            if got is None:
                assets["files_without"] += 1
            else:
                assets["items"] += int(got.get("items", 0))
                for name, n in (got.get("misses") or {}).items():
                    assets["not_of_type"][name] = assets["not_of_type"].get(name, 0) + int(n)
            for name, n in (report.get("misses") or {}).items():
                misses[name] = misses.get(name, 0) + int(n)
            for name, n in (report.get("filled") or {}).items():
                filled[name] = filled.get(name, 0) + int(n)
        columns = {}
        for name, typ in sorted((plan.get("types") or {}).items()):
            entry: dict[str, Any] = {"type": typ, "items": filled.get(name, 0)}
            if shown_name(name) != name:
                entry["shown_as"] = shown_name(name)
            if misses.get(name):
                entry["not_of_type"] = misses[name]
            columns[name] = entry
        out[cid] = {
            "items": sum(f["rows"] for f in by_collection[cid]),
            "columns": columns,
            "text_only": dict(plan.get("text_only") or {}),
            "asset_fields": assets,
            "legacy": "columns" not in meta,
            "closed": "columns" not in meta or bool(plan.get("closed")),
        }
    return out


def queryables_schema(stage: Stage, collection: str | None = None, base_url: str | None = None) -> dict[str, Any]:
    """The STAC API Queryables JSON Schema of the stage (or of one collection): the core fields, then each
    property column with its type (``x-stacbatch-items``: items with a value)."""
    m = stage.manifest
    if collection is not None and not m.files_of(collection):
        known = sorted({f["collection"] for f in m.files})
        raise InputError(f"collection {collection!r} has no staged items (staged: {', '.join(known[:10]) or 'none'})")
    chosen = [collection] if collection is not None else None
    report = queryables(stage)
    props: dict[str, Any] = {k: dict(v) for k, v in _CORE.items()}
    for name, (prop, typ) in property_columns(m, chosen).items():
        schema = json_schema_of(typ)
        schema["x-stacbatch-items"] = sum(
            (r["columns"].get(prop) or {}).get("items", 0)
            for cid, r in report.items()
            if collection is None or cid == collection
        )
        if name != prop:
            schema["x-stacbatch-column"] = name
        props[prop] = schema
    base = (base_url or "").rstrip("/")
    ident = f"{base}/collections/{collection}/queryables" if collection else f"{base}/queryables"
    return {
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": ident,
        "type": "object",
        "title": f"Queryables of {collection}" if collection else "Queryables",
        "properties": props,
        "additionalProperties": True,
    }
