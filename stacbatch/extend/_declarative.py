"""Declarative extensions: a YAML/JSON file with a schema URL and fields, no Python.

    extension: provider-quality
    schema: https://example.com/quality/v1.0.0/schema.json
    where: 'properties."eo:cloud_cover" IS NOT NULL'        # the items it extends (default: all selected)
    fields:
      properties."quality:clear": {sql: 'properties."eo:cloud_cover" < 10'}
      properties."quality:checked": true                     # a constant: any JSON value

Field values are the mapping language's: ``{sql: EXPR}`` (an SQL expression over the item, as in ``update --set``)
or a constant.
"""

from __future__ import annotations

from typing import Any

import orjson

from stacbatch.edit import Op, parse_cli_ops
from stacbatch.engine import _sql
from stacbatch.errors import InputError
from stacbatch.extend._base import Extension, Plan, Rule

FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["extension", "schema", "fields"],
    "properties": {
        "extension": {"type": "string", "pattern": "^[a-z][a-z0-9_.-]*$"},
        "schema": {"type": "string", "pattern": "^(https?|file)://"},
        "summary": {"type": "string"},
        "applies_to": {"type": "array", "items": {"enum": ["item", "collection", "asset"]}},
        "where": {"type": "string", "minLength": 1},
        "fields": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["sql"],
                        "additionalProperties": False,
                        "properties": {"sql": {"type": "string", "minLength": 1}},
                    },
                    {"not": {"type": "object", "required": ["sql"]}},
                ]
            },
        },
    },
}


class Declared(Extension):
    """An extension read from a file: its fields set on the items its ``where`` selects."""

    def __init__(self, data: dict[str, Any], source: str) -> None:
        self.source = source
        self.data = data
        # instance attributes shadow the class's: each file is its own extension
        self.name = data["extension"]  # type: ignore[misc]
        self.schema_urls = {"default": data["schema"]}  # type: ignore[misc]
        self.default_variant = "default"  # type: ignore[misc]
        self.applies_to = frozenset(data.get("applies_to") or ["item"])  # type: ignore[misc]
        self.summary = data.get("summary") or f"declared in {source}"  # type: ignore[misc]
        self.config_schema = {"type": "object", "additionalProperties": False, "properties": {}}  # type: ignore[misc]
        self.ops = self._ops()

    def _ops(self) -> tuple[Op, ...]:
        ops: list[Op] = []
        for path, value in self.data["fields"].items():
            expr = value["sql"] if isinstance(value, dict) and "sql" in value else _constant(value)
            try:
                ops += parse_cli_ops([f"{path}={expr}"], [], [])
            except InputError as err:
                raise InputError(f"{self.source}: fields.{path}: {err}") from None
        return tuple(ops)

    def plan(self, config: dict[str, Any], stage: Any) -> Plan:
        rule = Rule(name=f"{self.name} fields", ops=self.ops, applies=self.data.get("where") or "true")
        return Plan(self.schema_url(config), (rule,))


def _constant(value: Any) -> str:
    return f"{_sql.literal(orjson.dumps(value).decode())}::JSON"


def load_file(path: str) -> Declared:
    """A declarative extension file, checked (``FILE:LINE: key: problem`` on the first thing wrong)."""
    from stacbatch.mapping import read_mapping

    return Declared(read_mapping(path, FILE_SCHEMA).data, path)
