"""JSON Schema validation with jsonschema-rs: each schema compiled once per process, its ``$ref``s resolved from
the schema store only (never the network), its errors read as verdict rows.

A ``$ref`` to a document no folder has resolves to a stand-in that fails whatever reaches it, so only the objects
that need the missing document fail, each with "schema not available: URL". Formats (``date-time``, ``uri``...)
are not asserted unless asked: stac-validator does not assert them, and relative link hrefs, for one, are valid
STAC that an ``iri`` check refuses. stacbatch's own ``datetime`` check covers what matters of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jsonschema_rs

from stacbatch.validate._schemas import SchemaSource, SchemaStore, key

#: what a ``$ref`` to a missing document resolves to: nothing passes it
_MISSING = "stacbatch: schema not available"
#: longest message kept (messages of oneOf/anyOf failures quote the whole instance)
MESSAGE_MAX = 300


class Finding(NamedTuple):
    """One reason an object is invalid: the rule (a schema URL, or a check's name), where (a path such as
    ``properties.eo:bands[0].name``; empty for the object itself) and what."""

    rule: str
    path: str
    message: str


def path_text(parts: list[str | int] | tuple[str | int, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


@dataclass
class _Unavailable:
    message: str


class Engine:
    """The compiled validators of this process, by schema URL."""

    def __init__(self, source: SchemaSource, formats: bool = False) -> None:
        self.store = SchemaStore(source)
        self.formats = formats
        self._validators: dict[str, Any] = {}
        self.missing: set[str] = set()

    def _retrieve(self, uri: str) -> Any:
        doc = self.store.get(uri)
        if doc is None:
            self.missing.add(key(uri))
            return {"$schema": "http://json-schema.org/draft-07/schema#", "$comment": _MISSING, "not": {}}
        return doc

    def validator(self, url: str) -> Any:
        url = key(url)
        found = self._validators.get(url)
        if found is not None:
            return found
        doc = self.store.get(url)
        cycle = ref_cycle(url, self.store.get) if doc is not None else None
        if doc is None:
            found = _Unavailable(
                f"schema not available: {url} (put it in a --schemas folder, or run `stacbatch schemas fetch {url}`)"
            )
        elif cycle:
            found = _Unavailable(f"schema not usable: {url}: a cycle of $refs ({' -> '.join(cycle)}) validates nothing")
        else:
            try:
                found = jsonschema_rs.validator_for(doc, retriever=self._retrieve, validate_formats=self.formats)
            except (ValueError, jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError) as err:
                first = str(err).splitlines()[0][:MESSAGE_MAX]
                found = _Unavailable(f"schema not usable: {url}: {first}")
        self._validators[url] = found
        return found

    def check(self, url: str, obj: Any) -> list[Finding]:
        """Why ``obj`` fails the schema at ``url`` (nothing when it passes)."""
        v = self.validator(url)
        if isinstance(v, _Unavailable):
            return [Finding(key(url), "", v.message)]
        if v.is_valid(obj):
            return []
        return [self._finding(url, e) for e in v.iter_errors(obj)]

    def _gone(self, err: Any) -> str | None:
        """The missing document an error (or one of its oneOf/anyOf branches) ran into, if any."""
        where = err.absolute_keyword_location or ""
        gone = next((m for m in self.missing if where.startswith(m)), None)
        if gone is not None:
            return gone
        for branch in getattr(err.kind, "context", None) or ():
            for sub in branch:
                gone = self._gone(sub)
                if gone is not None:
                    return gone
        return None

    def _finding(self, url: str, err: Any) -> Finding:
        gone = self._gone(err) if self.missing else None
        if gone is not None:
            return Finding(key(url), path_text(list(err.instance_path)), f"schema not available: {gone}")
        err = _best(err)
        message = err.message
        if len(message) > MESSAGE_MAX:
            message = message[: MESSAGE_MAX - 3] + "..."
        return Finding(key(url), path_text(list(err.instance_path)), message)


#: keywords whose subschemas apply to the instance where the node applies (a loop through them never ends)
_IN_PLACE = ("allOf", "anyOf", "oneOf")


def ref_cycle(url: str, get: Any) -> list[str] | None:
    """A loop of ``$ref`` s (through ``allOf``/``anyOf``/``oneOf`` too) that never moves into the instance, from
    the schema at ``url``: such a schema checks nothing (jsonschema-rs passes everything through it), so it is
    refused. Recursion through ``properties``/``items`` (a tree of nodes) is fine and not followed."""
    from urllib.parse import urldefrag, urljoin

    def resolve(base: str, ref: str) -> tuple[str, Any]:
        target = urljoin(base, ref)
        doc_url, frag = urldefrag(target)
        node = get(doc_url or base)
        for part in frag.lstrip("/").split("/") if frag else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return target, None
        return target, node

    path: list[str] = []
    done: set[str] = set()

    def visit(where: str, node: Any) -> list[str] | None:
        if where in path:
            return [*path[path.index(where) :], where]
        if where in done or not isinstance(node, dict):
            return None
        path.append(where)
        base = urldefrag(where)[0]
        edges = []
        if isinstance(node.get("$ref"), str):
            edges.append(resolve(base, node["$ref"]))
        for kw in _IN_PLACE:
            for n, sub in enumerate(node.get(kw) or []):
                edges.append((f"{where}/{kw}/{n}" if "#" in where else f"{where}#/{kw}/{n}", sub))
        for target, sub in edges:
            found = visit(target, sub)
            if found:
                return found
        path.pop()
        done.add(where)
        return None

    return visit(url, get(url))


def _best(err: Any) -> Any:
    """For a oneOf/anyOf failure, the error of the branch that came closest (fewest errors, then the deepest one),
    as stac-validator's best match does; its own message would quote the whole instance."""
    context = getattr(err.kind, "context", None)
    if not context:
        return err
    branches = [b for b in context if b]
    if not branches:
        return err
    branch = min(branches, key=len)
    return _best(max(branch, key=lambda e: len(list(e.instance_path))))
