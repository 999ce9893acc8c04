"""Offline STAC validation for tests: JSON Schemas from ../shared/schemas (INDEX.json maps URL -> file)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
from conftest import SHARED, shared_path
from referencing import Registry, Resource

SCHEMAS = SHARED / "schemas"


@cache
def _registry() -> Registry:  # type: ignore[type-arg]
    index = json.loads((shared_path("schemas") / "INDEX.json").read_text())  # skips (CI: fails) without it
    resources = []
    for url, rel in index.items():
        path = SCHEMAS / rel
        if path.is_file():
            resources.append((url, Resource.from_contents(json.loads(path.read_text()))))
    return Registry().with_resources(resources)


def validate(doc: dict[str, Any], kind: str) -> None:
    """Raise jsonschema.ValidationError unless ``doc`` is a valid STAC ``kind`` (item, collection, catalog) of its
    version, and valid against each of its extensions."""
    registry = _registry()
    version = doc.get("stac_version", "1.1.0")
    base = f"https://schemas.stacspec.org/v{version}/{kind}-spec/json-schema/{kind}.json"
    for url in [base, *doc.get("stac_extensions", [])]:
        schema = registry.contents(url)
        cls = jsonschema.validators.validator_for(schema)
        cls(schema, registry=registry).validate(doc)


def validate_item(item: dict[str, Any]) -> None:
    validate(item, "item")
