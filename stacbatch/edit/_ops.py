"""Edit operations (set, unset, rename) from the command line or an update file, compiled to DuckDB SQL.

Each operation becomes one JSON function over the item (``json_set``, ``json_remove``), applied in order; paths
inside expressions read the item as the earlier operations left it, typed from what the stage holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import duckdb

from stacbatch.edit._paths import (
    PathError,
    find_references,
    item_segments,
    parse_path,
    pointer,
    split_assignment,
)
from stacbatch.engine import _sql
from stacbatch.engine._patch import format_path
from stacbatch.errors import InputError, QueryError

#: Keys that identify an item in the stage: changing them is a delete plus a load, not an update.
PROTECTED = {("id",), ("collection",)}
#: Paths whose change moves the typed query columns (datetime, bbox, geometry): rows are re-derived.
_DATETIMES = {("properties", k) for k in ("datetime", "start_datetime", "end_datetime")}


@dataclass(frozen=True)
class Op:
    kind: str  # set | unset | rename
    path: tuple[str, ...]
    expr: str | None = None
    to: tuple[str, ...] | None = None
    #: a ``set`` whose value is SQL NULL leaves the item as it is at that path (for extensions: a field only some
    #: items get); otherwise NULL writes a JSON null. (An ``unset`` with ``expr`` removes the path only from the
    #: items for which that predicate is true; later expressions see the value from before it.)
    keep_if_null: bool = False

    def describe(self) -> str:
        if self.kind == "set":
            return f"set {format_path(self.path)} = {self.expr}"
        if self.kind == "rename":
            assert self.to is not None
            return f"rename {format_path(self.path)} -> {format_path(self.to)}"
        if self.expr:
            return f"unset {format_path(self.path)} where {self.expr}"
        return f"unset {format_path(self.path)}"

    def targets(self) -> list[tuple[str, ...]]:
        return [self.path] if self.to is None else [self.path, self.to]


def _item_path(text: str, what: str) -> tuple[str, ...]:
    segs = item_segments(parse_path(text))
    _check_target(segs, what, text)
    return segs


def _check_target(segs: tuple[str, ...], what: str, text: str) -> None:
    if not segs:
        raise PathError(f"{what} {text!r}: give a path below the item root, e.g. properties.platform")
    if segs in PROTECTED:
        raise PathError(
            f"{what} {text!r}: {segs[0]} identifies the item in the stage and cannot be edited; "
            "delete the item and load it under its new key"
        )


def parse_cli_ops(sets: list[str], unsets: list[str], renames: list[str]) -> list[Op]:
    """Command-line operations: all --set in order, then --rename, then --unset (an update file keeps any order)."""
    ops = [_set_op(s) for s in sets]
    ops += [_rename_op(r) for r in renames]
    ops += [Op("unset", _item_path(u, "--unset")) for u in unsets]
    return ops


def _set_op(text: str) -> Op:
    segs, expr = split_assignment(text, "--set")
    segs = item_segments(segs)
    _check_target(segs, "--set", text)
    if not expr:
        raise PathError(f"--set {text!r}: no value after '='; use --unset to remove a field")
    return Op("set", segs, expr=expr)


def _rename_op(text: str) -> Op:
    old, new = split_assignment(text, "--rename")
    old = item_segments(old)
    new_segs = item_segments(parse_path(new))
    _check_target(old, "--rename", text)
    _check_target(new_segs, "--rename", text)
    return Op("rename", old, to=new_segs)


def parse_ops_document(doc: Any, source: str) -> tuple[list[Op], str | None, str | None]:
    """An update file: a list of operations, or ``{where:, ids:, operations: [...]}``. Operations are
    ``{set: "PATH=EXPR"}`` or ``{set: {PATH: EXPR, ...}}``, ``{unset: PATH | [PATH, ...]}``,
    ``{rename: "OLD=NEW"}`` or ``{rename: {OLD: NEW}}``. Returns (operations, where, ids file)."""
    where = ids = None
    if isinstance(doc, dict):
        unknown = set(doc) - {"where", "ids", "operations"}
        if unknown:
            raise InputError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; expected where, ids, operations")
        where, ids, doc = doc.get("where"), doc.get("ids"), doc.get("operations")
        for key, value in (("where", where), ("ids", ids)):
            if value is not None and not isinstance(value, str):
                raise InputError(f"{source}: {key} must be a string, got {value!r}")
    if not isinstance(doc, list) or not doc:
        raise InputError(f"{source}: expected a non-empty list of operations (set, unset, rename)")
    ops: list[Op] = []
    for n, entry in enumerate(doc, 1):
        where_at = f"{source}: operation {n}"
        if not isinstance(entry, dict) or len(entry) != 1:
            raise InputError(f"{where_at}: expected one of set, unset, rename as the only key, got {entry!r}")
        ((kind, value),) = entry.items()
        try:
            ops += _doc_op(kind, value, where_at)
        except PathError as err:
            raise InputError(f"{where_at}: {err}") from None
    return ops, where, ids


def _doc_op(kind: str, value: Any, where_at: str) -> list[Op]:
    if kind == "set":
        if isinstance(value, str):
            return [_set_op(value)]
        if isinstance(value, dict):
            return [_set_op(f"{k}={_sql_value(v)}") for k, v in value.items()]
    elif kind == "unset":
        values = value if isinstance(value, list) else [value]
        if all(isinstance(v, str) for v in values):
            return [Op("unset", _item_path(v, "unset")) for v in values]
    elif kind == "rename":
        if isinstance(value, str):
            return [_rename_op(value)]
        if isinstance(value, dict):
            return [_rename_op(f"{k}={v}") for k, v in value.items()]
    else:
        raise InputError(f"{where_at}: unknown operation {kind!r}; use set, unset or rename")
    raise InputError(f"{where_at}: {kind}: unexpected value {value!r}")


def _sql_value(value: Any) -> str:
    """A YAML/JSON value in a ``set`` mapping: strings are SQL expressions; numbers and booleans literals."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "NULL"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value
    raise InputError(f"set value {value!r}: write it as an SQL expression string")


def rederive(ops: list[Op]) -> bool:
    """Whether the operations may move the typed columns (datetime, bbox, geometry)."""
    return any(
        t[0] in ("geometry", "bbox") or t == ("properties",) or t[:2] in _DATETIMES for op in ops for t in op.targets()
    )


def sets_updated(ops: list[Op]) -> bool:
    """Whether the user manages ``properties.updated`` themselves (then stacbatch leaves it alone)."""
    return any(t in (("properties",), ("properties", "updated")) for op in ops for t in op.targets())


# -- compiling -----------------------------------------------------------------------------------------------
class Step(NamedTuple):
    """One operation as the rewrite applies it to each item."""

    #: set | unset | rename
    kind: str
    #: the target's path (``("properties", "eo:cloud_cover")``)
    path: tuple[str, ...]
    #: for a rename, the new path
    to: tuple[str, ...] | None
    #: for a set, the SQL that gives the JSON text to put there (one value per item)
    sql: str | None


@dataclass
class Compiled:
    where: str | None
    #: per operation, in order
    steps: list[Step] = field(default_factory=list)
    #: whether some target lies inside another (then unchanged items are told apart by hash, not per path)
    overlapping: bool = False


_SCALARS = {"VARCHAR", "BOOLEAN", "DOUBLE", "BIGINT", "UBIGINT"}


def check_sql(expr: str, what: str) -> None:
    """One SQL expression and nothing else (``_sql.check_expression``): checked before anything binds or runs it."""
    _sql.check_expression(expr, what)


def ref_types(con: duckdb.DuckDBPyConnection, view: str, refs: list[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """The JSON type of each referenced path over the staged items (a quick look first, the full scan only for
    paths the first rows lack); paths no staged item has are left out."""
    wanted = sorted(set(refs))
    types: dict[tuple[str, ...], str] = {}
    for limit in ("LIMIT 20000", ""):
        todo = [s for s in wanted if s not in types]
        if not todo:
            break
        cols = []
        for s in todo:
            p = _sql.literal(pointer(s))
            v = f"json_extract(item, {p})"
            cols.append(f"count(*) FILTER (WHERE json_exists(item, {p}))")
            # objects and arrays are JSON whatever their structure: only scalars need json_group_structure, which
            # is costly over large objects (an item's assets: ~1 s for 20k items)
            nested = f"json_type({v}) IN ('OBJECT', 'ARRAY')"
            cols.append(f"bool_or({nested})")
            cols.append(f"json_group_structure(CASE WHEN {nested} THEN NULL ELSE {v} END)")
        row = con.sql(f"SELECT {', '.join(cols)} FROM (SELECT item FROM {_sql.ident(view)} {limit})").fetchall()[0]
        for n, s in enumerate(todo):
            if row[3 * n]:
                scalar = "JSON" if row[3 * n + 1] else str(row[3 * n + 2] or '"JSON"').strip('"')
                types[s] = scalar if scalar in _SCALARS else "JSON"
    return types


def value_sql(segments: tuple[str, ...], typ: str, source: str = "item") -> str:
    p = _sql.literal(pointer(segments))
    if typ == "VARCHAR":
        return f"json_extract_string({source}, {p})"
    if typ in _SCALARS:
        return f"TRY_CAST(json_extract({source}, {p}) AS {typ})"
    return f"json_extract({source}, {p})"


def to_json_sql(value: str, typ: str) -> str:
    """An SQL value as JSON text: timestamps and dates as RFC 3339 text, SQL NULL as JSON null."""
    t = typ.upper()
    if t.startswith("TIMESTAMP"):
        v = (
            f"strftime(timezone('UTC', {value}), '%Y-%m-%dT%H:%M:%S.%fZ')"
            if "TIME ZONE" in t
            else f"strftime({value}, '%Y-%m-%dT%H:%M:%S.%fZ')"
        )
        return f"coalesce(to_json({v}), 'null'::JSON)"
    if t == "DATE":
        return f"coalesce(to_json(strftime({value}, '%Y-%m-%d')), 'null'::JSON)"
    if t == "JSON":
        return f"coalesce(({value})::JSON, 'null'::JSON)"
    return f"coalesce(to_json({value}), 'null'::JSON)"


class _Scope:
    """What each path reads as while operations are compiled in order: the staged value, or what an earlier
    operation wrote there (its SQL is inlined, so every value is computed from the staged item in one pass)."""

    def __init__(self, types: dict[tuple[str, ...], str]) -> None:
        self.types = types
        #: path -> (typed SQL, JSON SQL) written by an earlier operation; ("NULL", "NULL") once removed
        self.written: dict[tuple[str, ...], tuple[str, str]] = {}

    def read(self, segs: tuple[str, ...], what: str, expr: str) -> str:
        for path, (typed, as_json) in self.written.items():
            if segs == path:
                return typed
            if segs[: len(path)] == path:
                return f"json_extract({as_json}, {_sql.literal(pointer(segs[len(path) :]))})"
            if path[: len(segs)] == segs:
                raise QueryError(
                    f"{what} {expr!r}: reads {format_path(segs)} after an earlier operation changed "
                    f"{format_path(path)} inside it; split the operations into two updates"
                )
        if segs not in self.types:
            raise QueryError(
                f"{what} {expr!r}: no staged item has {format_path(segs)}; check the spelling "
                '(keys such as eo:cloud_cover need double quotes in SQL: properties."eo:cloud_cover")'
            )
        return value_sql(segs, self.types[segs])

    def compile(self, expr: str, what: str) -> str:
        check_sql(expr, what)
        template, refs = find_references(expr)
        out = template.format(**{f"ref{n}": f"({self.read(r.segments, what, expr)})" for n, r in enumerate(refs)})
        # what runs is checked too: paths are found by a simpler tokenizer than DuckDB's (E'' and $$ strings)
        problem = _sql.expression_problem(out)
        if problem:
            raise QueryError(f"{what} {expr!r}: {problem}")
        return out

    def write(self, path: tuple[str, ...], typed: str, as_json: str) -> None:
        for p in [p for p in self.written if p[: len(path)] == path]:
            del self.written[p]
        self.written[path] = (typed, as_json)


def compile_ops(con: duckdb.DuckDBPyConnection, view: str, ops: list[Op], where: str | None) -> Compiled:
    """Type every referenced path, bind every expression (errors here, before anything is written)."""
    exprs = [("--where", where)] if where else []
    exprs += [(f"--{op.kind} {format_path(op.path)}", op.expr) for op in ops if op.kind in ("set", "unset") and op.expr]
    refs: list[tuple[str, ...]] = []
    for what, e in exprs:
        check_sql(e, what)
        refs += [r.segments for r in find_references(e)[1]]
    try:
        types = ref_types(con, view, refs) if refs else {}
    except duckdb.Error as err:
        raise QueryError(f"cannot read the staged items: {_sql.one_line(err)}") from None
    scope = _Scope(types)
    compiled = Compiled(where=scope.compile(where, "--where") if where else None)
    if compiled.where:
        _bind(con, f"SELECT count(*) FROM {_sql.ident(view)} WHERE {compiled.where}", "--where", where or "")
    for op in ops:
        if op.kind == "set":
            assert op.expr is not None
            what = f"--set {format_path(op.path)}"
            value = scope.compile(op.expr, what)
            typ = _bind(con, f"DESCRIBE SELECT ({value}) AS v FROM {_sql.ident(view)}", what, op.expr)
            as_json = to_json_sql(value, typ)
            sql = f"({as_json})::VARCHAR"
            if op.keep_if_null:  # NULL stays NULL: the rewrite then leaves the item alone at this path
                sql = f"CASE WHEN ({value}) IS NULL THEN NULL ELSE {sql} END"
            compiled.steps.append(Step("set", op.path, None, sql))
            scope.write(op.path, f"({value})", as_json)
        elif op.kind == "unset" and op.expr:  # where a predicate holds: the rewrite evaluates it per item
            what = f"--unset {format_path(op.path)} where"
            predicate = scope.compile(op.expr, what)
            _bind(con, f"DESCRIBE SELECT ({predicate}) AS v FROM {_sql.ident(view)}", what, op.expr)
            compiled.steps.append(Step("unset", op.path, None, f"coalesce(({predicate})::BOOLEAN, false)"))
        elif op.kind == "unset":
            compiled.steps.append(Step("unset", op.path, None, None))
            scope.write(op.path, "NULL", "NULL::JSON")
        else:
            assert op.to is not None
            compiled.steps.append(Step("rename", op.path, op.to, None))
            moved = scope.written.get(op.path)
            if moved is None and op.path in types:
                moved = (value_sql(op.path, types[op.path]), f"json_extract(item, {_sql.literal(pointer(op.path))})")
            scope.write(op.path, "NULL", "NULL::JSON")
            if moved is not None:
                scope.write(op.to, *moved)
    targets = [t for op in ops for t in op.targets()]
    compiled.overlapping = any(a != b and b[: len(a)] == a for a in targets for b in targets)
    return compiled


def _bind(con: duckdb.DuckDBPyConnection, query: str, what: str, expr: str) -> str:
    """Bind a query without running it over the data; the type of its first column."""
    try:
        if query.startswith("DESCRIBE"):
            rows = con.sql(query).fetchall()
            return str(rows[0][1])
        con.sql(f"EXPLAIN {query}").fetchall()
        return ""
    except duckdb.Error as err:
        raise QueryError(f"{what} {expr!r}: {_sql.one_line(err)}") from None


def compile_where(con: duckdb.DuckDBPyConnection, where: str | None, view: str = "items") -> str | None:
    """A ``--where`` predicate with item paths (``properties."eo:cloud_cover" > 90``) as plain DuckDB SQL."""
    return compile_ops(con, view, [], where).where if where else None
