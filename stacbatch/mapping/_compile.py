"""A mapping compiled to one DuckDB SELECT over a batch of source records (relation ``__batch``), producing per
row: ``__row`` (the source record number), ``__error`` (why the row cannot be an item, or NULL), ``item`` (the
item's JSON text) and the query columns the stage indexes (``__id``, ``__collection``, ``__datetime``,
``__start_datetime``, ``__end_datetime`` in microseconds, which geometry alternative holds, ``__alt``, with
the GeoJSON text of those the SELECT builds itself, ``__built``, and the bounds).

Values are SQL expressions; every identifier goes through ``_sql.ident`` and every constant through
``_sql.literal`` (DuckDB's prepared parameters cannot reach into the projections of a registered Arrow batch run
many times, and the compiled text is what ``--explain`` shows).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from stacbatch.engine._sql import expression_problem, ident, literal
from stacbatch.mapping._doc import Doc
from stacbatch.mapping._tree import Arr, Const, Leaf, Node, Obj, text_sql

Key = tuple[str | int, ...]
SPEC_KEYS = ("column", "columns", "template", "const", "sql", "case", "lookup")
_TEMPLATE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
#: DuckDB's integer types (a template writes them as their digits)
_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")


#: columns added to a batch for geometry alternative N before the compiled query runs (see ``_run._prepare``)
def geom_columns(n: int) -> tuple[str, str, str, str, str, str, str]:
    """GeoJSON text (for the item), bounds, ISO WKB (for the stage: the item's geometry is not parsed again;
    GEOS writes GeoJSON coordinates exactly, so both say the same) and the GeoJSON's canonical stream where the
    kernel read the row (for the item's content hash, without parsing the text again)."""
    return (
        f"__geom{n}_json",
        f"__geom{n}_xmin",
        f"__geom{n}_ymin",
        f"__geom{n}_xmax",
        f"__geom{n}_ymax",
        f"__geom{n}_wkb",
        f"__geom{n}_canon",
    )


@dataclass
class Field:
    """An output field whose outcome the run reports: set, defaulted (a default stood in for null) or failed (the
    source had a value that did not convert)."""

    name: str
    value: str
    source: str | None = None
    defaulted: str | None = None
    failed: str | None = None
    #: a cheaper test of "has a value" than evaluating ``value`` (a parsed timestamp rather than its text)
    present: str | None = None


@dataclass
class Compiled:
    """The SELECT over a batch, in three parts: ``head`` (the parsed values and ``__row``, ``__error``), the item,
    ``tail`` (the stage's query columns and FROM). ``sql`` builds the item text in SQL; ``values_sql`` leaves it to
    the kernel (``_assemble``), selecting the item's leaves instead."""

    head: str
    item: Obj
    tail: str
    fields: list[Field] = field(default_factory=list)
    #: lookup table name -> (path, key column, delimiter)
    lookups: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)
    #: per geometry alternative that shapely reads (wkt, wkb, geojson, column): (alternative number, kind, column)
    geometry: list[tuple[int, str, str]] = field(default_factory=list)
    #: geometry alternatives that are 2D points from lon/lat columns (their bounds are the coordinates)
    points: list[int] = field(default_factory=list)
    #: the relation the per-field counts are taken over: the batch with its parsed top-level times
    counts_from: str = "__batch"

    @property
    def sql(self) -> str:
        """The SELECT with the item text built in SQL (what ``--explain`` shows)."""
        return f"{self.head}  {text_sql(self.item)} AS item,\n{self.tail}"

    def run_sql(self, leaf_sql: list[str] | None = None, counted: set[int] | frozenset[int] = frozenset()) -> str:
        """The SELECT a run uses: the item text built in SQL, or (``leaf_sql``: each leaf's SQL as the kernel reads
        it) leaf i as column ``__leaf<i>``; with the per-field outcome of each row (``count_columns``)."""
        if leaf_sql is None:
            cols = f"  {text_sql(self.item)} AS item,\n"
        else:
            cols = "".join(f"  {sql} AS __leaf{i},\n" for i, sql in enumerate(leaf_sql))
        return f"{self.head}{cols}{self.count_columns(counted)}{self.tail}"

    def count_columns(self, counted: set[int] | frozenset[int] = frozenset()) -> str:
        """Per reported field i, booleans ``__set<i>`` (unless ``counted``: a leaf's nulls tell) and, where it can
        happen, ``__defaulted<i>`` and ``__failed<i>``: counted in the same pass that maps the rows."""
        cols = []
        for i, f in enumerate(self.fields):
            present = f.present or f"({f.value}) IS NOT NULL"
            if i not in counted:
                cols.append(f"({present}){f' AND NOT ({f.defaulted})' if f.defaulted else ''} AS __set{i}")
            if f.defaulted:
                cols.append(f"({f.defaulted}) AS __defaulted{i}")
            if f.failed:
                cols.append(f"({f.failed}) AS __failed{i}")
        return "".join(f"  {c},\n" for c in cols)


_SIDES = ("xmin", "ymin", "xmax", "ymax")
#: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z in microseconds since 1970
_FIRST_US, _LAST_US = -62135596800000000, 253402300799999999


def _ts_text(ts: str) -> str:
    """A TIMESTAMPTZ as RFC 3339 UTC text: seconds always, a fraction only when there is one."""
    return (
        f"(strftime(timezone('UTC', {ts}), '%Y-%m-%dT%H:%M:%S') || "
        f"CASE WHEN epoch_us({ts}) % 1000000 = 0 THEN '' "
        f"ELSE '.' || rtrim(lpad(CAST(((epoch_us({ts}) % 1000000) + 1000000) % 1000000 AS VARCHAR), 6, '0'), '0') "
        f"END || 'Z')"
    )


class Compiler:
    def __init__(self, doc: Doc, columns: dict[str, str]) -> None:
        self.doc = doc
        self.columns = columns  # name -> DuckDB type, as the source reads
        self.fields: list[Field] = []
        self.last_ts = ""
        self.last_converted = ""  # the value of the last spec before its default (``nested``)
        self.last_pieces: tuple[tuple[str | None, str], ...] | None = None  # of the last template
        self.lookups: dict[str, tuple[str, str, str | None]] = {}
        for name, table in (doc.data.get("lookups") or {}).items():
            self.lookups[name] = (str(table["path"]), str(table["key"]), table.get("delimiter"))

    # -- references -------------------------------------------------------------------------------------------
    def column(self, name: str, key: Key) -> str:
        if name in self.columns:
            return f"__batch.{ident(name)}"
        head, _, rest = name.partition(".")
        if rest and head in self.columns and self.columns[head].upper().startswith("STRUCT"):
            return f"__batch.{ident(head)}" + "".join(f".{ident(p)}" for p in rest.split("."))
        shown = ", ".join(list(self.columns)[:12]) + (", ..." if len(self.columns) > 12 else "")
        raise self.doc.error(key, f"no column {name!r} in the source (it has: {shown})")

    def _as_text(self, name: str, key: Key) -> str:
        """A column's value as template text: as it is for text and integers; otherwise through to_json and back
        unquoted (the same text for a number, a date or a JSON string as the item would show)."""
        col = self.column(name, key)
        typ = self.columns.get(name, "").upper()
        if typ == "VARCHAR":
            return col
        if typ in _INTEGER_TYPES:
            return f"CAST({col} AS VARCHAR)"
        return f"(to_json({col}) ->> '$')"

    def template(self, text: str, key: Key) -> str:
        parts: list[str] = []
        pieces: list[tuple[str | None, str]] = []  # (column, "") or (None, literal text)
        pos = 0
        for m in _TEMPLATE.finditer(text):
            if m.start() > pos:
                parts.append(literal(text[pos : m.start()]))
                pieces.append((None, text[pos : m.start()]))
            token = m.group(0)
            if token in ("{{", "}}"):
                parts.append(literal(token[0]))
                pieces.append((None, token[0]))
            elif token in ("{", "}") or not (m.group(1) or "").strip():
                raise self.doc.error(key, f"malformed template {text!r}: write {{column}}, and {{{{ }}}} for braces")
            else:
                name = m.group(1).strip()
                parts.append(self._as_text(name, key))
                pieces.append((name, ""))
            pos = m.end()
        if pos < len(text):
            parts.append(literal(text[pos:]))
            pieces.append((None, text[pos:]))
        self.last_pieces = tuple(pieces)  # for ``Leaf.pieces`` (the assembler decides whether the kernel takes them)
        return "(" + " || ".join(parts or ["''"]) + ")"

    # -- values -----------------------------------------------------------------------------------------------
    def constant(self, value: Any, as_json: bool = False) -> str:
        """A string as VARCHAR (unless ``as_json``); any other JSON value as a JSON-typed SQL constant."""
        if isinstance(value, str) and not as_json:
            return literal(value)
        return f"json({literal(json.dumps(value, ensure_ascii=False))})"

    def value(self, spec: Any, key: Key, *, as_datetime: bool = False, report: bool = True) -> str:
        """The SQL of one value spec (any type; JSON for constants); ``as_datetime``: RFC 3339 text."""
        if not isinstance(spec, dict):
            templated = isinstance(spec, str) and ("{" in spec or "}" in spec)
            if as_datetime:  # a template or a constant, read as a date/time like any other value
                text = self.template(spec, key) if templated else "NULL" if spec is None else literal(str(spec))
                return self._datetime(text, {}, key, report)
            if templated:
                return self.template(spec, key)
            return self.constant(spec) if spec is not None else "NULL"
        if "column" in spec:
            base = self.column(str(spec["column"]), (*key, "column"))
        elif "columns" in spec:
            cols = [self.column(str(c), (*key, "columns", i)) for i, c in enumerate(spec["columns"])]
            base = f"concat_ws({literal(str(spec.get('join', '')))}, {', '.join(cols)})"
        elif "template" in spec:
            base = self.template(str(spec["template"]), (*key, "template"))
        elif "const" in spec:
            base = self.constant(spec["const"]) if spec["const"] is not None else "NULL"  # not set: left out
        elif "sql" in spec:
            base = f"({self.expression(spec['sql'], (*key, 'sql'))})"
        elif "case" in spec:
            # text when every outcome is text (a VARCHAR, written as a string, never parsed again); else JSON
            as_text = all(isinstance(v, str) for v in [*(arm["then"] for arm in spec["case"]), spec.get("else", "")])
            wrap = "({})" if as_text else "to_json({})"
            arms = " ".join(
                f"WHEN ({self.expression(arm['when'], (*key, 'case', i, 'when'))}) THEN "
                + wrap.format(self.value(arm["then"], (*key, "case", i, "then"), report=False))
                for i, arm in enumerate(spec["case"])
            )
            other = ""
            if "else" in spec:
                other = " ELSE " + wrap.format(self.value(spec["else"], (*key, "else"), report=False))
            base = f"(CASE {arms}{other} END)"
        else:
            base = self._lookup(spec["lookup"], (*key, "lookup"))
        source = base
        if "split" in spec:
            base = f"string_split(CAST({base} AS VARCHAR), {literal(str(spec['split']))})"
        if "index" in spec:
            index = int(spec["index"])
            base = f"list_extract({base}, {index + 1 if index >= 0 else index})"
        converted = base
        cast = spec.get("cast")
        if as_datetime or cast == "datetime":
            converted = self._datetime(base, spec, key, report=False)
        elif cast:
            sql_type = {"int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "string": "VARCHAR"}[str(cast)]
            converted = f"TRY_CAST({base} AS {sql_type})"
        final = converted
        self.last_converted = converted
        if "default" in spec:
            final = f"coalesce(to_json({converted}), {self.constant(spec['default'], as_json=True)})"
        if report:
            self.fields.append(
                Field(
                    name=".".join(str(k) for k in key),
                    value=final,
                    source=source,
                    defaulted=f"({converted}) IS NULL" if "default" in spec else None,
                    failed=f"({base}) IS NOT NULL AND ({converted}) IS NULL" if converted != base else None,
                    present=f"({converted}) IS NOT NULL",  # same outcome as testing `final`, without its to_json
                )
            )
        return final

    def _datetime(self, base: str, spec: dict[str, Any], key: Key, report: bool) -> str:
        tz = spec.get("timezone")
        if spec.get("epoch") == "s":
            ts = f"to_timestamp(TRY_CAST({base} AS DOUBLE))"
        elif spec.get("epoch") == "ms":
            ts = f"epoch_ms(TRY_CAST({base} AS BIGINT))"
        elif "format" in spec:
            fmt = str(spec["format"])
            parsed = f"try_strptime(CAST({base} AS VARCHAR), {literal(fmt)})"
            if "%z" in fmt or "%Z" in fmt:
                ts = parsed
            else:
                ts = f"timezone({literal(str(tz or 'UTC'))}, CAST({parsed} AS TIMESTAMP))"
        elif tz:
            ts = f"timezone({literal(str(tz))}, TRY_CAST({base} AS TIMESTAMP))"
        else:
            ts = f"TRY_CAST({base} AS TIMESTAMPTZ)"
        text = _ts_text(ts)
        self.last_ts = ts  # compile_mapping computes the timestamp once per row and formats it from there
        if report:
            name = ".".join(str(k) for k in key)
            failed = f"({base}) IS NOT NULL AND ({ts}) IS NULL"
            self.fields.append(Field(name, text, base, None, failed, present=f"({ts}) IS NOT NULL"))
        return text

    def _lookup(self, spec: dict[str, Any], key: Key) -> str:
        name = str(spec["table"])
        if name not in self.lookups:
            raise self.doc.error((*key, "table"), f"no lookup table {name!r}: declare it under lookups:")
        table = f"__lookup_{name}"
        _path, lookup_key, _delim = self.lookups[name]
        on = self.column(str(spec["match"]), (*key, "match"))
        return (
            f"(SELECT {ident(table)}.{ident(str(spec['value']))} FROM {ident(table)} "
            f"WHERE {ident(table)}.{ident(lookup_key)} = {on})"
        )

    def expression(self, sql: Any, key: Key) -> str:
        """A user's SQL expression (``sql:``, ``when:``), refused unless it is exactly one expression: it is put in
        the compiled SELECT, which ``mapping check`` and ``load --explain`` bind before any record is read."""
        text = str(sql)
        problem = expression_problem(text)
        if problem:
            raise self.doc.error(key, f"{text!r}: {problem}")
        return text

    def nested(self, spec: Any, key: Key) -> Node:
        """The tree of a value, an array of nested values, or an object of them."""
        if isinstance(spec, list):
            return Arr(tuple(self.nested(v, (*key, i)) for i, v in enumerate(spec)))
        if isinstance(spec, dict) and not any(k in spec for k in SPEC_KEYS):
            return self.obj(spec, key)
        if not isinstance(spec, dict) and not (isinstance(spec, str) and ("{" in spec or "}" in spec)):
            return Const.of(spec)
        if isinstance(spec, dict) and spec.keys() == {"const"}:
            self.value(spec, key)  # its counts: set on every row (unless the constant is null)
            return Const.of(spec["const"])  # in the item as it is: no per-row value to compute or parse
        self.last_pieces = None
        final = self.value(spec, key)
        if isinstance(spec, dict) and spec.get("default") is not None:
            # the value in its own type, the default as JSON text where it is null: the kernel writes both as they
            # are (no per-row JSON value for DuckDB to make and the kernel to parse); text_sql gives `final`'s text
            default = Const.of(spec["default"]).text
            if spec.keys() == {"column", "default"} and str(spec["column"]) in self.columns:
                return Leaf(self.last_converted, default=default, source=str(spec["column"]))  # read from the batch
            return Leaf(self.last_converted, default=default)
        if isinstance(spec, dict) and spec.keys() == {"column"} and str(spec["column"]) in self.columns:
            return Leaf(final, source=str(spec["column"]))  # the kernel may read it from the batch as it is
        if isinstance(spec, dict) and spec.keys() == {"column", "split"} and str(spec["split"]):
            name = str(spec["column"])
            if self.columns.get(name, "").upper() == "VARCHAR":  # the kernel splits it (as string_split does)
                return Leaf(final, split=(name, str(spec["split"])))
        if self.last_pieces is not None and (isinstance(spec, str) or spec.keys() == {"template"}):
            return Leaf(final, pieces=self.last_pieces)
        return Leaf(final)

    def nested_json(self, spec: Any, key: Key) -> str:
        """``nested`` as a JSON-typed SQL value (for the update engine, which types what it sets)."""
        return f"json({text_sql(self.nested(spec, key))})"

    def obj(self, members: dict[str, Any], key: Key, first: list[tuple[str, Node]] | None = None) -> Obj:
        """An object whose null members are left out (absent, not null: STAC's convention); ``first``: members
        put before them and kept even when null."""
        kept = [(k, v, True) for k, v in first or []]
        return Obj((*kept, *((str(k), self.nested(v, (*key, str(k))), False) for k, v in members.items())))


@dataclass
class _Alt:
    """One geometry alternative: GeoJSON text, the item's bbox (4 DOUBLE values), the condition under which it
    holds, its bounds (for the stage's bbox column), and the source column shapely or the kernel prepares (its WKB
    is then in ``geom_columns(n)[5]``)."""

    geom: str
    bbox: tuple[str, str, str, str]
    ok: str
    bounds: tuple[str, str, str, str]
    column: str | None = None


def _alternative(c: Compiler, spec: dict[str, Any], n: int, key: Key) -> _Alt:
    if "lonlat" in spec:
        cols = [f"TRY_CAST({c.column(str(v), (*key, 'lonlat', i))} AS DOUBLE)" for i, v in enumerate(spec["lonlat"])]
        lon, lat = cols[0], cols[1]
        geom = f"""('{{"type":"Point","coordinates":' || CAST(to_json([{", ".join(cols)}]) AS VARCHAR) || '}}')"""
        ok = f"({lon} IS NOT NULL AND {lat} IS NOT NULL AND abs({lon}) <= 180 AND abs({lat}) <= 90)"
        return _Alt(geom, (lon, lat, lon, lat), ok, (lon, lat, lon, lat))
    if "bbox" in spec:
        w, s, e, n_ = (f"TRY_CAST({c.column(str(v), (*key, 'bbox', i))} AS DOUBLE)" for i, v in enumerate(spec["bbox"]))
        ring = f"[[{w}, {s}], [{e}, {s}], [{e}, {n_}], [{w}, {n_}], [{w}, {s}]]"
        geom = f"""('{{"type":"Polygon","coordinates":' || CAST(to_json([{ring}]) AS VARCHAR) || '}}')"""
        ok = f"({w} IS NOT NULL AND {s} IS NOT NULL AND {e} IS NOT NULL AND {n_} IS NOT NULL AND {s} <= {n_})"
        return _Alt(geom, (w, s, e, n_), ok, (f"least({w}, {e})", s, f"greatest({w}, {e})", n_))  # the polygon's bounds
    kind = next(iter(spec))
    c.column(str(spec[kind]), (*key, kind))  # it must exist
    js, xmin, ymin, xmax, ymax, _wkb, _canon = (f"__batch.{name}" for name in geom_columns(n))
    bounds = (xmin, ymin, xmax, ymax)
    return _Alt(js, bounds, f"({js} IS NOT NULL)", bounds, str(spec[kind]))


@dataclass
class _Geometry:
    """The first alternative that holds: GeoJSON text (for the item built in SQL), its number (``alt``) and, for
    alternatives the SELECT builds (lon/lat, bbox), their GeoJSON text (``built``; NULL for prepared ones, whose
    columns stay in Python: ``_run.Mapper._geometry``), the item's bbox values, bounds, the error condition, and what
    ``_run._prepare`` prepares."""

    geom: str
    alt: str
    built: str
    bbox: list[str]
    bounds: list[str]
    bad: str
    prepared: list[tuple[int, str, str]]
    points: list[int] = field(default_factory=list)


def _geometry(c: Compiler, spec: Any) -> _Geometry:
    specs = spec if isinstance(spec, list) else [spec]
    alts: list[_Alt] = []
    prepared = []
    for n, one in enumerate(specs):
        key: Key = ("geometry", n) if isinstance(spec, list) else ("geometry",)
        alt = _alternative(c, one, n, key)
        if alt.column is not None:
            prepared.append((n, next(iter(one)), alt.column))
        alts.append(alt)
    points = [n for n, one in enumerate(specs) if len(one.get("lonlat") or ()) == 2]
    built = ["CAST(NULL AS VARCHAR)" if a.column is not None else a.geom for a in alts]
    if len(alts) == 1:
        alt = alts[0]
        return _Geometry(
            alt.geom,
            "CAST(0 AS TINYINT)",
            built[0],
            list(alt.bbox),
            list(alt.bounds),
            f"NOT {alt.ok}",
            prepared,
            points,
        )

    def case(values: list[str]) -> str:
        return "CASE " + " ".join(f"WHEN {a.ok} THEN {v}" for a, v in zip(alts, values, strict=True)) + " END"

    bounds = [case([a.bounds[i] for a in alts]) for i in range(4)]
    bbox = [case([a.bbox[i] for a in alts]) for i in range(4)]
    bad = "NOT (" + " OR ".join(a.ok for a in alts) + ")"
    number = case([f"CAST({n} AS TINYINT)" for n in range(len(alts))])
    return _Geometry(case([a.geom for a in alts]), number, case(built), bbox, bounds, bad, prepared, points)


def _bbox(g: _Geometry) -> Arr:
    """The item's bbox as four DOUBLE leaves (the kernel writes them without DuckDB's to_json): where a value is
    the stage's bound of that side, it is read from that output column (computed once)."""
    return Arr(
        tuple(
            Leaf(v, column=f"__{side}" if v == b else None) for v, b, side in zip(g.bbox, g.bounds, _SIDES, strict=True)
        )
    )


def _epoch(stamps: dict[str, str], key: str) -> str:
    name = ident("__" + key)
    return f"epoch_us(__batch.{ident('__ts_' + key)}) AS {name}" if key in stamps else f"CAST(NULL AS BIGINT) AS {name}"


def compile_mapping(doc: Doc, columns: dict[str, str]) -> Compiled:
    """The SELECT that turns a batch of source records into items. Raises MappingError (file, line, key) for a
    missing column, a malformed template or an unknown lookup table."""
    data = doc.data
    c = Compiler(doc, columns)
    has_time = "datetime" in data or ("start_datetime" in data and "end_datetime" in data)
    if not has_time:
        raise doc.error((), "give datetime, or start_datetime and end_datetime (STAC needs one or the other)")
    item_id = f"CAST({c.value(data['id'], ('id',))} AS VARCHAR)"
    collection = f"CAST({c.value(data['collection'], ('collection',))} AS VARCHAR)" if "collection" in data else None
    time_keys = [k for k in ("datetime", "start_datetime", "end_datetime") if k in data]
    for k in time_keys:
        if k in (data.get("properties") or {}):
            raise doc.error(("properties", k), f"{k} is set at the top level of the mapping; remove it here")
    stamps: dict[str, str] = {}  # time field -> its TIMESTAMPTZ expression
    for k in time_keys:
        c.value(data[k], (k,), as_datetime=True)
        stamps[k] = c.last_ts
    g = _geometry(c, data["geometry"])
    assets = c.obj(data.get("assets") or {}, ("assets",))
    # Only the mapping's own links: those that depend on a layout (collection, parent, root) are written by the
    # tree emit (`emit --format json`), where the files they point to exist; NDJSON and the stage have none.
    links = c.nested(list(data.get("links") or []), ("links",))
    # values used twice (in the checks and in the item) are computed once, in a first projection
    inner = [f"{item_id} AS __id", f"({g.bad}) AS __geom_bad"]
    inner += [f"{v} AS {ident('__ts_' + k)}" for k, v in stamps.items()]
    first: list[tuple[str, Node]] = [
        (k, Leaf(_ts_text("__batch." + ident("__ts_" + k)), column=f"__{k}", epoch=True)) for k in stamps
    ]
    if "datetime" not in stamps:
        first.insert(0, ("datetime", Const("null")))  # STAC: null when a range is given
    properties = c.obj(data.get("properties") or {}, ("properties",), first)
    members: list[tuple[str, Node, bool]] = [
        ("type", Const.of("Feature"), True),
        ("stac_version", Const.of(str(data.get("stac_version", "1.1.0"))), True),
    ]
    if data.get("stac_extensions"):
        members.append(("stac_extensions", Const.of(list(data["stac_extensions"])), True))
    members.append(("id", Leaf("__batch.__id", column="__id"), True))
    if collection:
        members.append(("collection", Leaf(collection, column="__collection"), False))
    members += [
        ("geometry", Leaf(g.geom, json=True, column="__geometry", canonical="__geometry_canon"), True),
        ("bbox", _bbox(g), True),
        ("properties", properties, True),
        ("links", links, True),
        ("assets", assets, True),
    ]
    checks = ["WHEN __batch.__id IS NULL THEN 'id: no value (check the id column or template)'"]
    for name, fld in ((f.name, f) for f in c.fields if f.name in stamps):
        checks.append(
            f"WHEN ({fld.source}) IS NOT NULL AND __batch.{ident('__ts_' + name)} IS NULL THEN "
            f"{literal(name + ': ')} || CAST({fld.source} AS VARCHAR) || {literal(' does not parse as a date/time')}"
        )
    for k in stamps:  # RFC 3339 has four-digit years (and Python's datetime no year 0)
        ts = f"__batch.{ident('__ts_' + k)}"
        checks.append(
            f"WHEN {ts} IS NOT NULL AND NOT (epoch_us({ts}) BETWEEN {_FIRST_US} AND {_LAST_US}) THEN "
            f"{literal(k + ': ')} || CAST({ts} AS VARCHAR) || {literal(' is outside the years 0001-9999')}"
        )
    all_empty = " AND ".join(f"__batch.{ident('__ts_' + k)} IS NULL" for k in stamps)
    checks.append(f"WHEN {all_empty} THEN 'no datetime: all empty'")
    checks.append("WHEN __batch.__geom_bad THEN 'geometry: missing, out of range or does not parse'")
    head = (
        f"WITH __v AS (SELECT __batch.*, {', '.join(inner)} FROM __batch)\n"
        "SELECT __batch.__row AS __row,\n"
        f"  CASE {' '.join(checks)} END AS __error,\n"
    )
    tail = (
        # the query columns the stage indexes, so that staging need not parse the item again
        f"  __batch.__id AS __id, {collection or 'CAST(NULL AS VARCHAR)'} AS __collection,\n"
        f"  {', '.join(_epoch(stamps, k) for k in ('datetime', 'start_datetime', 'end_datetime'))},\n"
        f"  {g.alt} AS __alt, {g.built} AS __built,\n"
        f"  {', '.join(f'{b} AS __{side}' for b, side in zip(g.bounds, _SIDES, strict=True))}\n"
        "FROM __v AS __batch"
    )
    # the counts test the top-level times through their parsed values, computed once per row there too
    for f in c.fields:
        if f.name in stamps:
            ts = f"__batch.{ident('__ts_' + f.name)}"
            f.present = f"{ts} IS NOT NULL"
            f.failed = f"({f.source}) IS NOT NULL AND {ts} IS NULL"
    parsed = ", ".join(f"{v} AS {ident('__ts_' + k)}" for k, v in stamps.items())
    counts_from = f"(SELECT __batch.*, {parsed} FROM __batch) AS __batch"
    item = Obj(tuple(members))
    return Compiled(
        head,
        item,
        tail,
        fields=c.fields,
        lookups=c.lookups,
        geometry=g.prepared,
        points=g.points,
        counts_from=counts_from,
    )
