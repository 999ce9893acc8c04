"""Which schemas a STAC object is checked against, as stac-validator (stac-valid) chooses them.

- the type: ``"Feature"`` is an Item, ``"Collection"`` and ``"Catalog"`` are themselves; stac-valid takes any other
  object with ``extent`` or ``license`` for a Collection and the rest for a Catalog, stacbatch calls it an object of
  unknown type (both invalid: the Catalog schema wants ``type: "Catalog"``).
- the core schema from ``stac_version``: ``https://schemas.stacspec.org/v{version}/{type}-spec/json-schema/{type}.json``
  for 1.0.0-beta.2 to 1.1.0, ``https://cdn.staclint.com/v{version}/{type}.json`` for other versions; a missing or
  malformed version is a verdict of its own.
- every entry of ``stac_extensions``: a URL as it is; a short name (``eo``) as stac-valid maps it,
  ``https://cdn.staclint.com/v{version}/extension/{name}.json`` (``proj`` read as ``projection``).
"""

from __future__ import annotations

import re
from typing import Any

#: versions whose core schemas are published at schemas.stacspec.org (stac-valid's list)
STACSPEC_VERSIONS = (
    "1.0.0-beta.2",
    "1.0.0-rc.1",
    "1.0.0-rc.2",
    "1.0.0-rc.3",
    "1.0.0-rc.4",
    "1.0.0",
    "1.1.0-beta.1",
    "1.1.0",
)
_VERSION = re.compile(r"^\d+\.\d+\.\d+(-[\w.\-]+)?$")
_TYPES = {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}


class Problem(Exception):
    """An object that cannot be checked against schemas at all (``rule`` names why)."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


def kind_of(obj: Any) -> str:
    """``item``, ``collection`` or ``catalog``; ``Problem`` for anything else."""
    if not isinstance(obj, dict):
        raise Problem("not-an-object", f"not a JSON object but a {type(obj).__name__}: a STAC object is an object")
    kind = _TYPES.get(obj.get("type"))  # type: ignore[arg-type]
    if kind is None:
        got = obj.get("type")
        what = "no type" if got is None else f"type {got!r}"
        raise Problem("unknown-type", f"{what}: a STAC object has type Feature (Item), Collection or Catalog")
    return kind


def version_of(obj: dict[str, Any]) -> str:
    version = obj.get("stac_version")
    if not isinstance(version, str) or not version.strip():
        raise Problem("stac-version", "stac_version is missing or empty: give the STAC version, e.g. 1.1.0")
    if not _VERSION.match(version):
        raise Problem("stac-version", f"stac_version {version!r} is not a version such as 1.0.0 or 1.1.0")
    return version


def core_url(kind: str, version: str) -> str:
    if version in STACSPEC_VERSIONS:
        return f"https://schemas.stacspec.org/v{version}/{kind}-spec/json-schema/{kind}.json"
    return f"https://cdn.staclint.com/v{version}/{kind}.json"


def extension_urls(obj: dict[str, Any], version: str) -> list[str]:
    """The schema URL of every ``stac_extensions`` entry, in order, without repeats."""
    exts = obj.get("stac_extensions")
    if not isinstance(exts, list):
        return []  # a wrong type is the core schema's to report
    out: list[str] = []
    for ext in exts:
        if not isinstance(ext, str):
            continue
        if not (ext.startswith(("http://", "https://")) or ext.endswith(".json")):
            name = "projection" if ext == "proj" else ext
            ext = f"https://cdn.staclint.com/v{version}/extension/{name}.json"
        if ext not in out:
            out.append(ext)
    return out


def schemas_of(obj: Any) -> tuple[str, str, list[str]]:
    """(kind, core schema URL, extension schema URLs) of an object; ``Problem`` when it has none."""
    kind = kind_of(obj)
    version = version_of(obj)
    return kind, core_url(kind, version), extension_urls(obj, version)
