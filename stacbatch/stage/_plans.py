"""Column plans: per collection, which properties are typed columns of its stage files (``_columns.py``).

A plan only ever learns: a name's type is fixed once it is a column (BIGINT may widen to DOUBLE), a name kept in
the text once stays there, and a name the plan has never seen cannot be in any older file of the collection, so a
new column is NULL in those files and nothing there contradicts it. That is what keeps columns and text in
agreement across loads without rewriting older files.
"""

from __future__ import annotations

from typing import Any

from stacbatch.stage._columns import MAX_TEXT_ONLY, TYPES
from stacbatch.stage._manifest import Manifest
from stacbatch.stage._structs import is_struct, valid_type, widen_struct

_WIDER = {("bigint", "double"): "double", ("list<bigint>", "list<double>"): "list<double>"}


class Plans(dict[str, dict[str, Any]]):
    """Collection -> plan; a collection without one gets the stage-wide declared queryables (``"*"``)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key) or super().get("*") or default


def plans_of(manifest: Manifest) -> Plans:
    """Collection -> its plan, with the stage's declared queryables applied (``queryables`` setting)."""
    declared = manifest.settings.get("queryables") or {}
    staged = {f["collection"] for f in manifest.files}
    out = Plans()
    for cid, meta in manifest.collections.items():
        plan = dict(meta.get("columns") or {})
        if "columns" not in meta and cid in staged:
            plan["closed"] = True  # its files predate queryable columns: any name may be in them already
        fixed = {**(declared.get("*") or {}), **(declared.get(cid) or {})}
        if fixed:
            plan["declared"] = fixed
        if plan:
            out[cid] = plan
    for cid in declared:  # collections declared before their first item
        if cid != "*" and cid not in out:
            out[cid] = {"declared": {**(declared.get("*") or {}), **declared[cid]}}
    if declared.get("*"):
        out.setdefault("*", {"declared": dict(declared["*"])})
    return out


def plan_of(manifest: Manifest, collection: str) -> dict[str, Any] | None:
    plan: dict[str, Any] | None = plans_of(manifest).get(collection)
    return plan


def widen(a: str, b: str) -> str | None:
    """The type holding both, or None."""
    if a == b:
        return a
    if is_struct(a) and is_struct(b):
        return widen_struct(a, b)
    return _WIDER.get((a, b)) or _WIDER.get((b, a))


def fold(before: Manifest, manifest: Manifest) -> None:
    """Teach each collection's plan what the files this write added say (their ``columns`` reports)."""
    old = {f["path"] for f in before.files}
    reports: dict[str, list[dict[str, Any]]] = {}
    for f in manifest.files:
        if f["path"] not in old and "columns" in f:
            reports.setdefault(f["collection"], []).append(dict(f["columns"]))
            # the plan keeps the text-only names; a file's entry keeps only what readers use (types, misses)
            f["columns"] = {k: v for k, v in f["columns"].items() if k != "text_only"}
    declared_all = manifest.settings.get("queryables") or {}
    staged = {f["collection"] for f in before.files}
    for cid, got in reports.items():
        meta = manifest.collections.setdefault(cid, {})
        plan = meta.get("columns") or {}
        if "columns" not in meta and cid in staged:
            plan = {"closed": True}  # files written before columns existed: no name is new to it (see plans_of)
        types: dict[str, str] = dict(plan.get("types") or {})
        text_only: dict[str, str] = dict(plan.get("text_only") or {})
        declared = {**(declared_all.get("*") or {}), **(declared_all.get(cid) or {})}
        closed = bool(plan.get("closed"))
        for report in got:
            for name, why in (report.get("text_only") or {}).items():
                if name not in types:
                    text_only.setdefault(name, why)
        for report in got:
            for name, typ in (report.get("types") or {}).items():
                if name in text_only or name in declared:
                    continue
                if name not in types:
                    types[name] = typ
                    continue
                joined = widen(types[name], typ)
                if joined is None:  # two files of this write saw it first, with different types
                    text_only[name] = f"mixed types ({types.pop(name)}, {typ})"
                else:
                    types[name] = joined
        for name, typ in declared.items():
            if typ in TYPES or (is_struct(typ) and valid_type(typ)):
                types[name] = typ
        # Names that differ only in case are one name to SQL: the first the plan had (else the first by name) stays.
        first: dict[str, str] = {}
        for name in [*(n for n in types if n in (plan.get("types") or {})), *sorted(types)]:
            other = first.setdefault(name.lower(), name)
            if other != name and name in types and name not in declared:
                del types[name]
                text_only[name] = f"same name as {other!r} but for case"
        if len(text_only) > MAX_TEXT_ONLY:
            closed = True
            text_only = dict(sorted(text_only.items())[:MAX_TEXT_ONLY])
        meta["columns"] = {"types": dict(sorted(types.items())), "text_only": dict(sorted(text_only.items()))}
        if closed:
            meta["columns"]["closed"] = True
