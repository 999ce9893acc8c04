"""The extension interface: what an extension declares, and how it is found.

An extension names itself and its schema URL(s) (one per variant), says which objects it applies to, gives the JSON
Schema its configuration must pass, and turns a configuration into ``Rule`` s: edit operations whose values are SQL
over each item (the same expressions as ``update --set``), applied to whole batches by the edit layer. No Python
runs per item.

Extensions are found by name among the built-ins, in the ``stacbatch.extensions`` entry point group of installed
packages, as ``package.module:attribute``, or as a declarative extension file (YAML/JSON) path.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from stacbatch.edit import Lookup, Op
from stacbatch.errors import InputError

#: the entry point group where installed packages offer extensions (an ``Extension`` subclass or instance)
ENTRY_POINTS = "stacbatch.extensions"


@dataclass(frozen=True)
class Rule:
    """One thing an extension does to the items it selects."""

    #: named in reports ("fold s3_* assets", "cid from manifest")
    name: str
    #: what it sets, in order (``Op("set", path, expr=SQL)``); an expression returns the value unchanged where the
    #: rule has nothing to do, so a second run changes nothing
    ops: tuple[Op, ...]
    #: SQL predicate over the items view (item paths allowed, as in ``--where``): the items this rule extends
    applies: str
    #: SQL predicate: items the rule cannot extend (reported with ``why``, counted, left as they are)
    cannot: str | None = None
    why: str = ""


@dataclass(frozen=True)
class Plan:
    """What an extension will do with one configuration: its schema URL and its rules."""

    schema_url: str
    rules: tuple[Rule, ...]
    #: values joined in from outside the stage (a CID manifest, CIDs of asset bytes): columns the rules' SQL reads;
    #: items they find nothing for are not selected
    lookups: tuple[Lookup, ...] = ()
    #: more schema URLs the rules' fields need (dgeo's ``alternate.ipfs`` needs alternate-assets)
    also: tuple[str, ...] = ()
    #: after the run: what could not be used and why (an asset href that could not be read, say)
    problems: Callable[[], dict[str, str]] | None = None
    #: a Collection document (a copy) extended, or None where nothing applies; ``extend`` adds the schema URLs and
    #: stages it in the items' commit. A few documents: plain Python
    collections: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None


class Extension:
    """Base class of extensions: subclass it, set the class attributes, implement ``plan``."""

    #: the name users give to ``--extension``
    name: ClassVar[str] = ""
    #: variant -> schema URL; ``default_variant`` is used unless the configuration names another
    schema_urls: ClassVar[dict[str, str]] = {}
    default_variant: ClassVar[str] = ""
    #: which objects it extends: any of item, collection, asset
    applies_to: ClassVar[frozenset[str]] = frozenset({"item"})
    #: JSON Schema (draft 2020-12) of the configuration; checked before anything runs
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    #: configuration keys that name files (``("manifest", "path")``): in a configuration file, relative to it
    path_keys: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: one line for ``stacbatch extend --list``
    summary: ClassVar[str] = ""

    def schema_url(self, config: dict[str, Any]) -> str:
        variant = config.get("variant") or self.default_variant
        if variant not in self.schema_urls:
            known = ", ".join(sorted(self.schema_urls))
            raise InputError(f"extension {self.name}: unknown variant {variant!r}; the variants are {known}")
        return self.schema_urls[variant]

    def digest(self, config: dict[str, Any]) -> str | None:
        """A digest of everything the extension reads outside the stage for ``config`` (the configuration, a
        manifest file's bytes), when that is all it reads; None otherwise (the default). A re-run with the same
        digest over data files unchanged since its last run has nothing to do: ``extend`` says so before planning."""
        return None

    def plan(self, config: dict[str, Any], stage: Any) -> Plan:  # pragma: no cover - the interface
        """The rules for ``config`` (already checked against ``config_schema``) on ``stage`` (to look at which
        asset keys, collections... it holds, with SQL)."""
        raise NotImplementedError


def obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else a new empty one (for documents edited in Python)."""
    return value if isinstance(value, dict) else {}


@dataclass
class Found:
    extension: Extension
    #: where it came from: "built-in", an entry point, a module path or a file
    origin: str


def builtins() -> dict[str, type[Extension]]:
    from stacbatch.extend._alternate import AlternateAssets
    from stacbatch.extend._dgeo import Dgeo

    return {AlternateAssets.name: AlternateAssets, Dgeo.name: Dgeo}


def _instance(obj: Any, where: str) -> Extension:
    ext = obj() if isinstance(obj, type) else obj
    if not isinstance(ext, Extension):
        raise InputError(f"{where}: not a stacbatch extension (subclass stacbatch.extend.Extension)")
    return ext


def find(name: str) -> Found:
    """The extension called ``name``: a built-in, an entry point, ``module:attribute`` or an extension file."""
    known = builtins()
    if name in known:
        return Found(known[name](), "built-in")
    for ep in entry_points(group=ENTRY_POINTS):
        if ep.name == name:
            try:
                return Found(_instance(ep.load(), f"entry point {ep.value}"), f"entry point {ep.value}")
            except ImportError as err:
                raise InputError(f"extension {name}: entry point {ep.value} cannot be imported: {err}") from None
    if name.endswith((".yaml", ".yml", ".json")) or Path(name).is_file():
        from stacbatch.extend._declarative import load_file

        return Found(load_file(name), name)
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise InputError(f"extension {name}: cannot be imported: {err}") from None
        return Found(_instance(obj, name), name)
    offered = sorted({*known, *(ep.name for ep in entry_points(group=ENTRY_POINTS))})
    raise InputError(
        f"unknown extension {name!r}; known: {', '.join(offered)} (or give an extension file, or module:attribute)"
    )


def available() -> list[tuple[str, str, str]]:
    """(name, origin, summary) of every extension found by name."""
    out = [(n, "built-in", cls.summary) for n, cls in sorted(builtins().items())]
    for ep in entry_points(group=ENTRY_POINTS):
        out.append((ep.name, f"entry point {ep.value}", ""))
    return out
