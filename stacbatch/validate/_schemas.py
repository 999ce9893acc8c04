"""Where schemas come from: schema folders (each with an ``INDEX.json`` of URL -> file, like the STAC schema
bundles), then the local cache that ``stacbatch schemas fetch`` fills, then the schemas bundled with stacbatch (STAC
1.0.0 and 1.1.0 core and the common extensions: ``schemas/SOURCES.md``). A validation never goes to the network.

The documents are read as they are, with two repairs that change no verdict of a well-formed schema: a document's
``$id`` is set to the URL it is filed under (some published files carry the ``$id`` of another version, which
would shadow that version), and entries of a ``properties`` map that are not schemas (a ``"$comment"`` string
placed there) are dropped, as validators that do not check schemas against their meta-schema ignore them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stacbatch.engine import _fs
from stacbatch.errors import InputError

#: schema folders, separated like PATH
FOLDERS_ENV = "STACBATCH_SCHEMAS"
#: where fetched schemas are kept (default: $XDG_CACHE_HOME/stacbatch/schemas, or ~/.cache/stacbatch/schemas)
CACHE_ENV = "STACBATCH_SCHEMA_CACHE"
INDEX = "INDEX.json"
#: the schemas that ship with stacbatch, consulted last
BUNDLED = str(Path(__file__).resolve().parent / "schemas")


def default_cache() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "stacbatch" / "schemas"


def key(url: str) -> str:
    """The form a schema URL is filed under: without its fragment (``...schema.json#`` is ``...schema.json``)."""
    return url.split("#", 1)[0]


@dataclass(frozen=True)
class SchemaSource:
    """Where a process finds schemas: small and picklable, so worker processes build their own store from it."""

    folders: tuple[str, ...] = ()
    cache: str | None = None
    bundled: bool = True

    @classmethod
    def from_env(cls, folders: list[str] | None = None, cache: str | None = None) -> SchemaSource:
        """``folders`` first (``--schemas``), then ``$STACBATCH_SCHEMAS``, then the cache."""
        given = list(folders or [])
        given += [f for f in os.environ.get(FOLDERS_ENV, "").split(os.pathsep) if f]
        for folder in given:
            if not os.path.isfile(os.path.join(folder, INDEX)):
                raise InputError(f"schema folder {folder}: no {INDEX} in it (a JSON object of schema URL -> file)")
        return cls(tuple(given), cache if cache is not None else str(default_cache()))


class SchemaStore:
    """The schema documents a source offers, by URL (the first folder that lists a URL wins; the cache last)."""

    def __init__(self, source: SchemaSource) -> None:
        self.source = source
        self.files: dict[str, Path] = {}
        for folder in self.folders():
            index = Path(folder) / INDEX
            if not index.is_file():
                continue
            try:
                entries = orjson.loads(index.read_bytes())
            except orjson.JSONDecodeError as err:
                raise InputError(f"{index}: not JSON ({err}); it maps schema URLs to files") from None
            if not isinstance(entries, dict):
                raise InputError(f"{index}: expected a JSON object of schema URL -> file")
            for url, rel in entries.items():
                self.files.setdefault(key(url), Path(folder) / str(rel))
        self._docs: dict[str, Any] = {}

    def folders(self) -> list[str]:
        """Where schemas are looked up, first to last."""
        src = self.source
        return [*src.folders, *([src.cache] if src.cache else []), *([BUNDLED] if src.bundled else [])]

    def urls(self) -> list[str]:
        return sorted(self.files)

    def add(self, url: str, doc: Any) -> None:
        """Offer ``doc`` under ``url`` (a custom schema file); None: known to be unreadable."""
        self._docs[key(url)] = doc if not isinstance(doc, dict) else {**_repaired(doc), "$id": key(url)}

    def get(self, url: str) -> Any | None:
        """The schema filed under ``url``, repaired (see the module's note); None when no folder has it, or its file
        is missing or not JSON."""
        url = key(url)
        if url in self._docs:
            return self._docs[url]
        doc = None
        path = self.files.get(url)
        if path is not None:
            try:
                doc = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                doc = None
            if isinstance(doc, dict):
                doc = _repaired(doc)
                doc["$id"] = url
        self._docs[url] = doc
        return doc


def _repaired(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ("properties", "patternProperties", "definitions", "$defs") and isinstance(v, dict):
                out[k] = {name: _repaired(s) for name, s in v.items() if isinstance(s, dict | bool)}
            else:
                out[k] = _repaired(v)
        return out
    if isinstance(node, list):
        return [_repaired(v) for v in node]
    return node


def cache_file(url: str) -> str:
    """The cache's file name for a URL: readable, and unique by a hash of the whole URL."""
    tail = key(url).rstrip("/").rsplit("/", 3)[-3:]
    digest = hashlib.sha256(key(url).encode()).hexdigest()[:16]
    return "_".join([digest, *(t for t in tail if t)])[:200]


def add_to_cache(cache: Path, docs: dict[str, bytes]) -> list[str]:
    """File ``docs`` (URL -> JSON bytes) in the cache and its index; each file, then the index, is replaced whole."""
    cache.mkdir(parents=True, exist_ok=True)
    index_path = cache / INDEX
    index: dict[str, str] = orjson.loads(index_path.read_bytes()) if index_path.is_file() else {}
    fs, _ = _fs.filesystem(str(cache))
    for url, data in docs.items():
        name = cache_file(url)
        _fs.atomic_write_bytes(fs, str(cache / name), data)
        index[key(url)] = name
    _fs.atomic_write_bytes(fs, str(index_path), orjson.dumps(index, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    return sorted(docs)
