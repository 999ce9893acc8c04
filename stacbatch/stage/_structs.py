"""Struct columns: a property whose values are flat objects (``proj:centroid``: ``{"lat": .., "lon": ..}``) becomes a
STRUCT column, one field per member, when the objects are regular: every member's values have one scalar JSON type
(integers, numbers, booleans or strings; numbers as in property columns) and there are at most ``MAX_FIELDS``
member names. Objects nesting objects or arrays stay in the text (``proj:geometry``, ``proj:projjson``).

A struct type's name is ``struct`` + the JSON object of its fields (``struct{"lat":"double","lon":"double"}``),
fields sorted by name. An object fits a struct type when every member it has is a field and each member's value
fits the field's type (null fits every field); a member it lacks is NULL in its field. An object that does not fit
leaves the column NULL there and is counted, as any value of another type is. Types widen as a union of fields
(common fields widening BIGINT to DOUBLE); DuckDB reads files of narrower structs under the wider type by name.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from stacbatch.stage._columns import (
    ARRAY,
    BIGNUM,
    FALSE,
    FLOAT,
    INT,
    NULL,
    OBJECT,
    STRING,
    TRUE,
    TYPES,
    _scatter,
    _take,
    by_name,
    entries,
)

#: member names a struct column holds at most (beyond: the property stays in the text)
MAX_FIELDS = 32
#: the field types and the member kinds that fit each
FITS = {
    "bigint": (INT,),
    "double": (INT, FLOAT, BIGNUM),
    "boolean": (TRUE, FALSE),
    "string": (STRING,),
}


def is_struct(typ: str | None) -> bool:
    return bool(typ) and typ.startswith("struct{")  # type: ignore[union-attr]


def fields_of(typ: str) -> dict[str, str]:
    fields: dict[str, str] = json.loads(typ[6:])
    return fields


def struct_type(fields: dict[str, str]) -> str:
    return "struct" + json.dumps(dict(sorted(fields.items())), separators=(",", ":"), ensure_ascii=False)


def valid_type(typ: str) -> bool:
    """Whether ``typ`` names a struct type this module writes (declared queryables are checked with it)."""
    try:
        fields = fields_of(typ)
    except (ValueError, TypeError):
        return False
    return (
        isinstance(fields, dict)
        and 0 < len(fields) <= MAX_FIELDS
        and all(isinstance(k, str) and k and v in FITS for k, v in fields.items())
        and len({k.lower() for k in fields}) == len(fields)
    )


def arrow_type(typ: str) -> pa.DataType:
    return pa.struct([(name, TYPES[t]) for name, t in fields_of(typ).items()])


def widen_struct(a: str, b: str) -> str | None:
    """The struct type holding both (union of fields), or None."""
    fa, fb = fields_of(a), fields_of(b)
    out = dict(fa)
    for name, t in fb.items():
        have = out.get(name)
        if have is None or have == t:
            out[name] = t
        elif {have, t} == {"bigint", "double"}:
            out[name] = "double"
        else:
            return None
    if len(out) > MAX_FIELDS or len({k.lower() for k in out}) != len(out):
        return None
    return struct_type(out)


def _infer(kinds: set[int]) -> str | None:
    kinds = kinds - {NULL}
    if not kinds:
        return "string"  # only nulls so far: any type holds them
    for name in ("bigint", "double", "boolean", "string"):
        if kinds <= set(FITS[name]) and (name != "double" or kinds & {INT, FLOAT}):
            return name
    return None


def struct_values(texts: pa.Array, target: str | None, fixed: bool) -> tuple[pa.Array, str, np.ndarray] | str:
    """The struct column of a set of object texts under ``target`` (None: inferred from them), its type and a mask
    of the objects that fit; or why these objects make no struct column (a new name's reason to stay text only).
    A target that is not ``fixed`` (declared) widens to hold these objects when it can."""
    n = len(texts)
    e = entries(texts, "")
    names, groups = by_name(e)  # by member name; the last of duplicates counts
    # objects with a nested member fit no struct; the others say what each member holds
    nested = np.zeros(n, np.bool_)
    nested[e.rows[np.isin(e.kinds, (ARRAY, OBJECT))]] = True
    inferred: dict[str, str] = {}
    mixed = bool(nested.any())
    for i, sel in groups.items():
        flat = sel[~nested[e.rows[sel]]]
        t = _infer(set(np.unique(e.kinds[flat]).tolist())) if len(flat) else None
        if t is None:
            mixed = True
        else:
            inferred[names[i]] = t
    if target is None:  # a new name: every object must be flat and regular
        if mixed:
            return "objects whose members hold objects, arrays or mixed types"
        if not inferred:
            return "objects without members"
        target = struct_type(inferred)
        if not valid_type(target):
            return f"objects with more than {MAX_FIELDS} member names, an empty name or names equal but for case"
    elif not fixed and inferred:  # widened by what the flat objects hold (the rest do not fit, and are counted)
        wider = widen_struct(target, struct_type(inferred))
        if wider is not None and valid_type(wider):
            target = wider  # (older files' narrower structs read under it by name)
    fields = fields_of(target)
    index = {name: i for i, name in enumerate(names)}
    fits = np.ones(n, np.bool_)
    for i, sel in groups.items():
        t = fields.get(names[i])
        bad = sel if t is None else sel[~np.isin(e.kinds[sel], (NULL, *FITS[t]))]
        fits[e.rows[bad]] = False
    children = []
    for name, t in fields.items():
        picked = groups.get(index[name]) if name in index else None
        if picked is None:
            children.append(pa.nulls(n, TYPES[t]))
            continue
        sel = picked
        kind = e.kinds[sel]
        keep = np.isin(kind, FITS[t]) & fits[e.rows[sel]]
        rows = e.rows[sel][keep]
        if t == "bigint":
            children.append(_scatter(n, rows, e.ints[sel][keep], pa.int64()))
        elif t == "double":
            children.append(_scatter(n, rows, e.floats[sel][keep], pa.float64()))
        elif t == "boolean":
            children.append(_scatter(n, rows, kind[keep] == TRUE, pa.bool_()))
        else:
            children.append(_take(n, rows, e.texts, sel[keep]))
    column = pa.StructArray.from_arrays(children, fields=list(arrow_type(target)), mask=pa.array(~fits))
    return column, target, fits


def struct_from_text(ptr: str, typ: str, literal: Any) -> str:
    """SQL reading the struct at JSON pointer ``ptr`` from the item text as ``struct_values`` decides (``literal``:
    ``_sql.literal``)."""
    fields = fields_of(typ)
    json_types = {
        "bigint": "('BIGINT', 'UBIGINT')",
        "double": "('BIGINT', 'UBIGINT', 'DOUBLE')",
        "boolean": "('BOOLEAN')",
        "string": "('VARCHAR')",
    }
    sql = {"bigint": "BIGINT", "double": "DOUBLE", "boolean": "BOOLEAN", "string": "VARCHAR"}
    allowed = "[" + ", ".join(literal(name) for name in fields) + "]"
    members = f"json_keys(item, {literal(ptr)})"
    checks = [f"coalesce(list_bool_and(list_transform({members}, lambda k: list_contains({allowed}, k))), true)"]
    values = []
    for name, t in fields.items():
        p = literal(ptr + "/" + name.replace("~", "~0").replace("/", "~1"))
        fit = f"json_type(item, {p}) IN {json_types[t]}"
        if t == "bigint":
            fit += f" AND TRY_CAST(json_extract_string(item, {p}) AS BIGINT) IS NOT NULL"
        checks.append(f"(json_type(item, {p}) IS NULL OR json_type(item, {p}) = 'NULL' OR ({fit}))")
        values.append(f"{literal(name)}: CASE WHEN {fit} THEN TRY_CAST(json_extract_string(item, {p}) AS {sql[t]}) END")
    return (
        f"CASE WHEN json_type(item, {literal(ptr)}) = 'OBJECT' AND {' AND '.join(checks)} "
        f"THEN {{{', '.join(values)}}} END"
    )
