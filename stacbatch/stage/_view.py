"""The ``items`` view: the stage's core columns plus one typed column per queryable property, under its STAC name.

A property has one type in the view. Per collection it reads the file column ``properties.<name>`` where the
collection's plan has it (cast when it widened, e.g. BIGINT files under DOUBLE), and the item text where the
plan keeps that name in the text (mixed types, over the cap, another type than the stage-wide one): slower, never
wrong. Collections with the same expressions share one ``read_parquet`` (``union_by_name``: files of one
collection may differ in their columns).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stacbatch.engine import _sql
from stacbatch.stage import _assets
from stacbatch.stage._columns import PREFIX, STAMP
from stacbatch.stage._manifest import Manifest
from stacbatch.stage._plans import widen
from stacbatch.stage._structs import fields_of, is_struct, struct_from_text

SQL_TYPES = {
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "string": "VARCHAR",
    "timestamp": "TIMESTAMPTZ",
    "list<bigint>": "BIGINT[]",
    "list<double>": "DOUBLE[]",
    "list<boolean>": "BOOLEAN[]",
    "list<string>": "VARCHAR[]",
}
#: the view's own column names: a property with one of these names (in any case) is shown as ``properties.<name>``
CORE = frozenset(
    {
        *("collection", "id", "datetime", "start_datetime", "end_datetime", "bbox", "geometry"),
        *("properties", "assets", "links", "item", "content_hash", "stage_run", "stage_seq", _assets.COLUMN),
    }
)
_JSON_TYPES = {
    "bigint": "('BIGINT', 'UBIGINT')",
    "double": "('BIGINT', 'UBIGINT', 'DOUBLE')",
    "boolean": "('BOOLEAN')",
    "string": "('VARCHAR')",
    "timestamp": "('VARCHAR')",
}


#: a branch key's mark for files without the asset_fields column (read from the text)
_NO_ASSETS = "\x01assets"


def empty_select(source: str) -> str:
    """The items view's query over a table with only the core columns (no file yet)."""
    empty = f"CAST(MAP {{}} AS {_assets.SQL_TYPE})"
    return (
        _sql.load("items_select").replace("{columns}", "").replace("{source}", source).replace("{asset_fields}", empty)
    )


def shown_name(name: str) -> str:
    return PREFIX + name if name.lower() in CORE else name


def pointer(name: str) -> str:
    """The JSON pointer (RFC 6901) of ``properties.<name>`` in an item."""
    return "/properties/" + name.replace("~", "~0").replace("/", "~1")


#: the shapes of timestamp the stage's readers take (the kernel's parse_rfc3339; DuckDB's cast takes more)
_STAMP = STAMP
#: per list type, the JSON types its elements may have (NULL elements aside) to fit, as ``_columns`` decides
_ELEMENTS = {
    "list<bigint>": "json_type(x) IN ('BIGINT', 'UBIGINT') AND TRY_CAST(x AS BIGINT) IS NOT NULL",
    "list<double>": "json_type(x) IN ('BIGINT', 'UBIGINT', 'DOUBLE')",
    "list<boolean>": "json_type(x) = 'BOOLEAN'",
    "list<string>": "json_type(x) = 'VARCHAR'",
}


def sql_type(typ: str) -> str:
    """The SQL type of a column type name (``_columns.TYPES``, or a struct type: ``_structs``)."""
    if is_struct(typ):
        return "STRUCT(" + ", ".join(f"{_sql.ident(k)} {SQL_TYPES[t]}" for k, t in fields_of(typ).items()) + ")"
    return SQL_TYPES[typ]


def from_text(name: str, typ: str) -> str:
    """The property read from the item text, typed as the view's column: the value where the file's column would
    hold it, NULL where the JSON type differs or the value does not fit (as ``_columns.derive`` decides)."""
    if is_struct(typ):
        return f"CAST({struct_from_text(pointer(name), typ, _sql.literal)} AS {sql_type(typ)})"
    ptr = _sql.literal(pointer(name))
    sql_type_ = SQL_TYPES[typ]
    if typ.startswith("list<"):
        elements = f"CAST(json_extract(item, {ptr}) AS JSON[])"
        fits = f"coalesce(list_bool_and(list_transform({elements}, lambda x: x IS NULL OR ({_ELEMENTS[typ]}))), true)"
        return (
            f"CASE WHEN json_type(item, {ptr}) = 'ARRAY' AND {fits} "
            f"THEN TRY_CAST(json_extract(item, {ptr}) AS {sql_type_}) END"
        )
    value = f"json_extract_string(item, {ptr})"
    if typ == "timestamp":
        return (
            f"CASE WHEN json_type(item, {ptr}) = 'VARCHAR' AND regexp_full_match({value}, {_sql.literal(_STAMP)}) "
            f"THEN TRY_CAST(upper({value}) AS TIMESTAMPTZ) END"
        )
    return f"CASE WHEN json_type(item, {ptr}) IN {_JSON_TYPES[typ]} THEN TRY_CAST({value} AS {sql_type_}) END"


def stage_types(manifest: Manifest, collections: list[str]) -> dict[str, str]:
    """Name -> the view's type: what every collection that has the column agrees on (after widening), else the
    type that the most items hold. Names equal but for case are one column: the one with more items is shown."""
    votes: dict[str, dict[str, int]] = {}
    by_collection = manifest.files_by_collection()
    for cid in collections:
        n = max(1, sum(f["rows"] for f in by_collection.get(cid, ())))
        for name, typ in ((manifest.collections.get(cid) or {}).get("columns") or {}).get("types", {}).items():
            votes.setdefault(name, {})
            votes[name][typ] = votes[name].get(typ, 0) + n
    out: dict[str, str] = {}
    weight: dict[str, int] = {}
    for name, by_type in votes.items():
        typs = sorted(by_type, key=lambda t: (-by_type[t], t))
        joined: str | None = typs[0]
        for t in typs[1:]:
            joined = widen(joined, t) if joined is not None else None
        out[name] = joined or typs[0]
        weight[name] = sum(by_type.values())
    shown: dict[str, str] = {}
    for name in sorted(out, key=lambda n: (-weight[n], n)):
        shown.setdefault(shown_name(name).lower(), name)
    return {name: out[name] for name in sorted(out) if shown[shown_name(name).lower()] == name}


def items_sql(
    manifest: Manifest, view: str, collections: list[str] | None, full_path: Callable[[str], str]
) -> tuple[str, list[str]]:
    """``CREATE VIEW`` text of the items view over these collections' files (all: None), and the property names
    it shows (in column order). Empty selection: the caller uses the empty table."""
    body, names = items_select(manifest, collections, full_path)
    return f"CREATE OR REPLACE VIEW {_sql.ident(view)} AS\n{body}", names


def items_select(
    manifest: Manifest, collections: list[str] | None, full_path: Callable[[str], str], locate: bool = False
) -> tuple[str, list[str]]:
    """The query under the items view (empty text when no file is selected) and its property names. ``locate``
    adds each row's ``filename`` and ``file_row_number`` (what edits select by)."""
    by_collection = manifest.files_by_collection()
    every = sorted(by_collection)
    chosen = every if collections is None else sorted(set(collections))
    # the whole stage's columns and types, whichever collections are read: a predicate written against `items`
    # binds, and means the same, over any of them (columns no chosen file has are NULL)
    types = stage_types(manifest, every)
    names = sorted(types)
    lowered = {name.lower(): name for name in names}
    # Branches are keyed by what needs more than a plain column read (casts, the text): a plain column is read
    # from whichever files of the branch have it, and union_by_name gives NULL in the others, which is what
    # their items hold (a file lacks a column only when none of its items has that property as a typed value).
    # So a stage of many collections with different properties is still one or a few branches.
    groups: dict[frozenset[tuple[str, str]], tuple[set[str], list[str]]] = {}
    for cid in chosen:
        files = by_collection.get(cid)
        if not files:
            continue
        meta = manifest.collections.get(cid) or {}
        plan = meta.get("columns") or ({} if "columns" in meta else {"closed": True})  # older stages
        have: dict[str, str] = plan.get("types") or {}
        kept = plan.get("text_only") or {}
        present: set[str] = set()
        for f in files:
            present.update((f.get("columns") or {}).get("types", {}))
        plain: set[str] = set()
        if plan.get("closed"):  # any name may be in any of its files' texts
            special = {name: from_text(name, types[name]) for name in names}
        else:  # names the collection never held stay out: NULL, as UNION BY NAME fills them
            special = {name: from_text(name, types[name]) for name in kept if name in types}
            for name, own in have.items():
                if name not in types or name in special:
                    continue
                if name in present and widen(own, types[name]) == types[name]:
                    plain.add(name)
                else:
                    special[name] = from_text(name, types[name])
        base = frozenset(special.items())
        for f in files:
            # A file may hold a name in another type than its collection's (written before a declaration or a
            # widening), or a name that is a shown one but for case (two files of one write saw "A" and "a"):
            # read_parquet's union_by_name would take that column for the shown one. The file then reads the
            # shown name from its text, in a branch of its own.
            odd: dict[str, str] = {}
            if "assets" not in (f.get("columns") or {}):  # written before the asset_fields column
                odd[_NO_ASSETS] = ""
            for name, ftyp in (f.get("columns") or {}).get("types", {}).items():
                other = lowered.get(name.lower())
                if other is None:
                    continue
                if other != name:
                    odd["\x00" + name] = ""
                    if other in plain:
                        odd[other] = from_text(other, types[other])
                elif name in plain and widen(ftyp, types[name]) != types[name]:
                    odd[name] = from_text(name, types[name])
            got = groups.setdefault(base | frozenset(odd.items()) if odd else base, (set(), []))
            got[0].update(plain.difference(odd))
            got[1].append(full_path(f["path"]))
    select = _sql.load("items_select")
    branches: list[str] = []
    covered = {n for key, (plain, _paths) in groups.items() for n in (*plain, *(k for k, _e in key))}
    for special_items, (plain, paths) in groups.items():
        exprs = dict(special_items)
        if not branches:  # names no branch reads: NULL, typed, in one branch (UNION BY NAME fills the others)
            exprs.update((n, f"CAST(NULL AS {sql_type(types[n])})") for n in names if n not in covered)
        # CAST even where the type is the view's: a branch's files may all hold a narrower one (BIGINT under DOUBLE)
        exprs.update((name, f"CAST({_sql.ident(PREFIX + name)} AS {sql_type(types[name])})") for name in plain)
        cols = "".join(f",\n    {exprs[n]} AS {_sql.ident(shown_name(n))}" for n in names if n in exprs)
        where = ", filename = true, file_row_number = true" if locate else ""
        cols += ",\n    filename,\n    file_row_number" if locate else ""
        source = f"read_parquet({_sql.literal_list(paths)}, hive_partitioning = false, union_by_name = true{where})"
        assets = _assets.from_text() if _NO_ASSETS in exprs else _sql.ident(_assets.COLUMN)
        branches.append(select.replace("{columns}", cols).replace("{source}", source).replace("{asset_fields}", assets))
    return "\nUNION ALL BY NAME\n".join(branches), names


def property_columns(manifest: Manifest, collections: list[str] | None = None) -> dict[str, Any]:
    """Shown name -> (property name, type) of the view's property columns; with ``collections``, those these
    collections hold, typed as they agree among themselves (what a collection's Queryables schema says)."""
    chosen = sorted({f["collection"] for f in manifest.files} if collections is None else set(collections))
    return {shown_name(n): (n, t) for n, t in stage_types(manifest, chosen).items()}
