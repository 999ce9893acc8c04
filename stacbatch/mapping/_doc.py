"""Reading a mapping file (YAML or JSON) with the line of every key, and checking it against the mapping schema.

Every problem is reported as ``FILE:LINE: key.path: what is wrong``, before any work is done.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import yaml

from stacbatch.errors import InputError


class MappingError(InputError):
    """A mapping file that cannot be used: one line with the file, the line and the key."""


class Doc:
    """A parsed mapping and where each of its keys sits in the file."""

    def __init__(self, path: str, data: Any, lines: dict[tuple[str | int, ...], int]) -> None:
        self.path = path
        self.data = data
        self._lines = lines
        #: how HTTP sources are fetched (headers, rate limit, retries, timeout), from the command line
        self.http: dict[str, Any] = {}

    def line(self, key: tuple[str | int, ...]) -> int | None:
        while key:
            if key in self._lines:
                return self._lines[key]
            key = key[:-1]
        return self._lines.get(())

    def error(self, key: tuple[str | int, ...], message: str) -> MappingError:
        line = self.line(key)
        where = f"{self.path}:{line}" if line else self.path
        name = ".".join(str(k) for k in key) or "(top level)"
        return MappingError(f"{where}: {name}: {message}")


def _walk(node: yaml.Node, key: tuple[str | int, ...], lines: dict[tuple[str | int, ...], int]) -> None:
    lines[key] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            sub = (*key, str(k.value))
            _walk(v, sub, lines)
            lines[sub] = k.start_mark.line + 1  # a key's own line, not its value's
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _walk(v, (*key, i), lines)


def read_mapping(path: str, schema: dict[str, Any] | None = None) -> Doc:
    """Read and check a mapping file (JSON is YAML too, so one reader keeps lines for both) against the mapping
    schema (or ``schema``)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise MappingError(f"{path}: cannot read the mapping: {err.strerror or err}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise MappingError(f"{where}: not valid YAML/JSON: {getattr(err, 'problem', None) or err}") from None
    lines: dict[tuple[str | int, ...], int] = {}
    if node is not None:
        _walk(node, (), lines)
    doc = Doc(path, data, lines)
    check_schema(doc, schema)
    return doc


@cache
def mapping_schema() -> dict[str, Any]:
    text = resources.files("stacbatch.mapping").joinpath("mapping.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def check_schema(doc: Doc, schema: dict[str, Any] | None = None) -> None:
    """The first schema violation (the deepest, most specific one), as a MappingError."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema or mapping_schema())
    errors = list(validator.iter_errors(doc.data))
    if not errors:
        return
    best = jsonschema.exceptions.best_match(errors)
    key = tuple(best.absolute_path)
    message = best.message
    if best.validator == "additionalProperties" and isinstance(best.instance, dict):
        known = set(best.schema.get("properties") or {})
        extra = [k for k in best.instance if k not in known]
        if extra:  # point at the unexpected key itself
            key = (*key, str(extra[0]))
            message = f"unknown key {extra[0]!r} (allowed: {', '.join(sorted(known))})"
    if len(message) > 200:
        message = message[:197] + "..."
    raise doc.error(key, message)
