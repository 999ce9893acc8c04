"""Offline STAC validation for tests: JSON Schemas from ../shared/schemas (INDEX.json maps URL -> file)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
from conftest import SHARED
from referencing import Registry, Resource

SCHEMAS = SHARED / "schemas"
ITEM_1_1 = "https://schemas.stacspec.org/v1.1.0/item-spec/json-schema/item.json"


@cache
def _registry() -> Registry:  # type: ignore[type-arg]
    index = json.loads((SCHEMAS / "INDEX.json").read_text())
    resources = []
    for url, rel in index.items():
        path = SCHEMAS / rel
        if path.is_file():
            resources.append((url, Resource.from_contents(json.loads(path.read_text()))))
    return Registry().with_resources(resources)


def validate_item(item: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless the item is valid STAC (its version and its extensions)."""
    registry = _registry()
    version = item.get("stac_version", "1.1.0")
    urls = [
        f"https://schemas.stacspec.org/v{version}/item-spec/json-schema/item.json",
        *item.get("stac_extensions", []),
    ]
    for url in urls:
        schema = registry.contents(url)
        cls = jsonschema.validators.validator_for(schema)
        cls(schema, registry=registry).validate(item)
