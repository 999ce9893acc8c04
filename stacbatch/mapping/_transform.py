"""``stacbatch transform``: the mapping language applied to staged items, compiled to the operations ``update``
runs (so changed items get ``properties.updated``, unchanged ones keep their bytes, and every change is audited).

A transform file::

    where: "collection = 'landsat'"             # optional: which items (SQL over item paths)
    properties:                                   # set: value specs whose columns are item paths
      platform: {sql: "upper(properties.platform)"}
      title: "{properties.platform} {id}"
    assets:
      data: {href: {sql: "replace(assets.data.href, 'https://a/', 's3://b/')"}}   # only assets.data.href is set
    rename: {properties.cloud: "properties.eo:cloud_cover"}
    unset: [properties.junk]
"""

from __future__ import annotations

from typing import Any

from stacbatch.mapping._compile import SPEC_KEYS, Compiler, Key
from stacbatch.mapping._doc import Doc, mapping_schema, read_mapping

_ROOTS = ("properties", "assets", "links", "stac_extensions", "geometry", "bbox", "collection")


def transform_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "where": {"type": "string"},
            "properties": {"type": "object", "additionalProperties": {"$ref": "#/$defs/nested"}},
            "assets": {"type": "object", "additionalProperties": {"$ref": "#/$defs/nested"}},
            "links": {"$ref": "#/$defs/nested"},
            "stac_extensions": {"$ref": "#/$defs/nested"},
            "rename": {"type": "object", "additionalProperties": {"type": "string"}},
            "unset": {"type": "array", "items": {"type": "string"}},
        },
        "$defs": mapping_schema()["$defs"],
    }


class _PathCompiler(Compiler):
    """Columns are item paths (``properties.platform``, ``assets.data.href``, ``id``): the update engine resolves
    and types them, and reports an unknown one."""

    def __init__(self, doc: Doc) -> None:
        self.doc = doc
        self.columns = {}
        self.fields = []
        self.lookups = {}

    def column(self, name: str, key: Key) -> str:
        return name

    def _lookup(self, spec: dict[str, Any], key: Key) -> str:
        raise self.doc.error(key, "lookups are for records (load --mapping); in a transform use sql: with a join")


def _quote(segment: str) -> str:
    return segment if segment.isidentifier() else '"' + segment.replace('"', '""') + '"'


def compile_transform(path: str) -> tuple[list[Any], str | None]:
    """The update operations of a transform file, and its ``where``."""
    from stacbatch.edit._ops import Op, parse_cli_ops

    doc = read_mapping(path, schema=transform_schema())
    data = doc.data
    c = _PathCompiler(doc)
    sets: list[str] = []

    def leaves(spec: Any, prefix: tuple[str, ...], key: Key) -> None:
        if isinstance(spec, dict) and spec and not any(k in spec for k in SPEC_KEYS):
            for k, v in spec.items():
                leaves(v, (*prefix, str(k)), (*key, str(k)))
        else:
            sets.append(f"{'.'.join(_quote(p) for p in prefix)}={c.nested_json(spec, key)}")

    for root in _ROOTS:
        if root in data:
            leaves(data[root], (root,), (root,))
    renames = [f"{old}={new}" for old, new in (data.get("rename") or {}).items()]
    ops: list[Op] = parse_cli_ops(sets, list(data.get("unset") or []), renames)
    return ops, data.get("where")
