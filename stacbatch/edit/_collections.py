"""Collection-level updates: title, description, license, providers, keywords, extents, summaries, anything.

The same operations as item updates (set/unset/rename with SQL values), applied to one staged Collection JSON;
``--recompute extent,summaries,item_assets`` computes those from the staged items. The new JSON is a new
content-addressed file; the manifest switch commits it with an audit row.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from stacbatch.edit._ops import Op, Step, to_json_sql
from stacbatch.edit._rewrite import _apply, _get, _NotAnObject, _same
from stacbatch.engine import _finite, _json, _sql
from stacbatch.engine._patch import format_path
from stacbatch.errors import InputError, QueryError
from stacbatch.kernel import _canonical
from stacbatch.stage import LoadResult, Run, Stage, audit_table, commit, stage_collection


@dataclass
class CollectionUpdate:
    collection: str
    run_id: str | None
    changed: list[str] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    stage_version: int = 0


def extent_from_items(stage: Stage, collection: str) -> dict[str, Any]:
    """Spatial (union bbox) and temporal (first start, last end) extent of a collection's staged items."""
    view = stage.items_view([collection])
    row = stage.sql(
        f"SELECT min(bbox.xmin), min(bbox.ymin), max(bbox.xmax), max(bbox.ymax), "
        f"min(coalesce(start_datetime, datetime)), max(coalesce(end_datetime, datetime)), count(*) "
        f"FROM {_sql.ident(view)}"
    ).fetchall()[0]
    if not row[6]:
        raise InputError(f"collection {collection!r} has no staged items to compute an extent from")

    def stamp(v: Any) -> str | None:
        return v.astimezone(UTC).isoformat().replace("+00:00", "Z") if v is not None else None

    bbox = [list(row[:4])] if row[0] is not None else [[-180.0, -90.0, 180.0, 90.0]]
    return {"spatial": {"bbox": bbox}, "temporal": {"interval": [[stamp(row[4]), stamp(row[5])]]}}


#: properties summarised by default when a collection is scaffolded (those present in its items)
SUMMARY_DEFAULTS = (
    "platform",
    "constellation",
    "instruments",
    "gsd",
    "eo:cloud_cover",
    "proj:code",
    "sar:instrument_mode",
)
#: a property with more distinct values than this is summarised by range only (numbers) or not at all
MAX_DISTINCT = 50


def summaries_from_items(stage: Stage, collection: str, names: list[str]) -> dict[str, Any]:
    """STAC summaries computed by DuckDB from the staged items: a range for numbers, the distinct values (array
    members flattened) for the rest; properties no item has, or with too many values, are left out."""
    view = _sql.ident(stage.items_view([collection]))
    out: dict[str, Any] = {}
    for name in names:
        path = _sql.literal("/properties/" + name.replace("~", "~0").replace("/", "~1"))  # a JSON Pointer
        row = stage.sql(
            f"WITH v AS (SELECT json_extract(item, {path}) AS j FROM {view}), "
            "e AS (SELECT unnest(CASE WHEN json_type(j) = 'ARRAY' THEN CAST(j AS JSON[]) ELSE [j] END) AS j FROM v "
            "WHERE j IS NOT NULL AND json_type(j) <> 'NULL') "
            "SELECT count(*), bool_and(json_type(j) IN ('BIGINT', 'UBIGINT', 'DOUBLE')), "
            "min(TRY_CAST(j AS DOUBLE)), max(TRY_CAST(j AS DOUBLE)), count(DISTINCT j), "
            "list(DISTINCT CAST(j AS VARCHAR) ORDER BY CAST(j AS VARCHAR)) FROM e"
        ).fetchall()[0]
        count, numeric, lo, hi, distinct, values = row
        if not count:
            continue
        if numeric and distinct > 10:
            out[name] = {"minimum": _number(lo), "maximum": _number(hi)}
        elif distinct <= MAX_DISTINCT:
            out[name] = [_json.loads(v) for v in values]
    return out


#: asset fields never summarised into item_assets: locations differ per item (and item_assets forbids href)
_NOT_IN_ITEM_ASSETS = ("href", "alternate")


def item_assets_from_items(stage: Stage, collection: str) -> dict[str, Any]:
    """``item_assets`` derived by DuckDB from the staged items: for each asset key, the fields every item with
    that asset has, with one value across them all (``href`` and ``alternate`` left out); keys in order of name."""
    view = _sql.ident(stage.items_view([collection]))
    left_out = ", ".join(_sql.literal(f) for f in _NOT_IN_ITEM_ASSETS)
    rows = stage.sql(
        "WITH a AS (SELECT unnest(map_entries(CAST(json_extract(item, '/assets') AS MAP(VARCHAR, JSON)))) AS e "
        f"FROM {view} WHERE json_type(json_extract(item, '/assets')) = 'OBJECT'), "
        "n AS (SELECT e.key AS k, count(*) AS items FROM a GROUP BY ALL), "
        "f AS (SELECT e.key AS k, unnest(map_entries(CAST(e.value AS MAP(VARCHAR, JSON)))) AS fe FROM a "
        "WHERE json_type(e.value) = 'OBJECT') "
        "SELECT f.k, (fe).key, any_value(CAST((fe).value AS VARCHAR)) FROM f JOIN n USING (k) "
        f"WHERE (fe).key NOT IN ({left_out}) GROUP BY f.k, (fe).key, n.items "
        "HAVING count(*) = n.items AND count(DISTINCT CAST((fe).value AS VARCHAR)) = 1 ORDER BY 1, 2"
    ).fetchall()
    out: dict[str, Any] = {}
    for key, name, value in rows:
        out.setdefault(key, {})[name] = _json.loads(value)
    return out


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def update_collection(
    stage_path: str,
    collection: str,
    ops: list[Op],
    *,
    extent: bool = False,
    dry_run: bool = False,
    fields: dict[str, Any] | None = None,
    summaries: list[str] | None = None,
    item_assets: bool = False,
    document: dict[str, Any] | None = None,
) -> CollectionUpdate:
    """Apply ``ops``; ``fields``: top-level members set as given (scaffold's description, license, providers...);
    ``extent``/``summaries``/``item_assets``: computed from the staged items; ``document``: the whole Collection
    (from a file), which replaces the staged one or creates it before any item names it. A collection whose
    content changes gets ``updated`` (now), unless the operations set it; one created here gets ``created`` too."""
    if not ops and not extent and not fields and summaries is None and not item_assets and document is None:
        raise InputError("nothing to do: give --set, --unset, --rename, --recompute or --from")
    if document is not None and (document.get("type") != "Collection" or document.get("id") != collection):
        raise InputError(
            f"the document is not a Collection with id {collection!r} (type {document.get('type')!r}, "
            f"id {document.get('id')!r}); fix the file or the id given"
        )
    t0 = time.perf_counter()
    stage = Stage.open(stage_path)
    with stage.write_lock():
        stage = Stage.open(stage_path)
        if collection not in stage.manifest.collections and document is None:
            known = ", ".join(sorted(stage.manifest.collections)[:10]) or "none"
            raise InputError(
                f"collection {collection!r} is not in the stage (it has: {known}); create it with --from FILE"
            )
        doc = stage.collection_json(collection) if collection in stage.manifest.collections else None
        created = doc is None
        if document is not None:
            doc = copy.deepcopy(document)
        elif doc is None:  # a key only items named: start from a minimal Collection
            doc = {
                "type": "Collection",
                "stac_version": "1.1.0",
                "id": collection,
                "description": collection,
                "license": "other",
                "extent": {},
                "links": [],
            }
        before = copy.deepcopy(doc) if not created else {}
        now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        if created and "created" not in doc:  # STAC's created: when this metadata was first made (here, now)
            doc["created"] = now
        steps = _compile(stage, ops)
        values = [v for _k, _p, _t, v in steps if v is not None]
        try:
            _apply(doc, steps, values, {}, overlapping=True)
        except _NotAnObject as err:
            raise InputError(f"cannot set below {err.args[0]}: it is not a JSON object in the collection") from None
        doc.update(copy.deepcopy(fields or {}))
        if extent:
            doc["extent"] = extent_from_items(stage, collection)
        if summaries is not None:
            found = summaries_from_items(stage, collection, summaries)
            if found:
                doc["summaries"] = {**(doc.get("summaries") or {}), **found}
        if item_assets:
            derived = item_assets_from_items(stage, collection)
            if derived:
                doc["item_assets"] = derived
        if doc.get("id") != collection:
            raise InputError("a collection's id cannot be changed by an update")
        res = CollectionUpdate(collection, None, before=before, after=doc)
        paths = {format_path(p) for _k, p, to, _v in steps for p in ([p] if to is None else [p, to])}
        if extent:
            paths.add("extent")
        paths |= set(fields or {}) | ({"summaries"} if summaries is not None else set())
        paths |= {"item_assets"} if item_assets else set()
        if document is not None:
            paths |= set(doc) | set(before)
        res.changed = sorted(p for p in paths if not _same(_get(before, _split(p)), _get(doc, _split(p))))
        moved = _canonical.content_hash(before) != _canonical.content_hash(doc)
        if moved and "updated" not in paths:  # as items get properties.updated; unless the user set it themselves
            doc["updated"] = now
            res.changed = sorted({*res.changed, "updated"})
        if dry_run or not moved:
            res.seconds = time.perf_counter() - t0
            return res
        run = Run(
            stage.fs,
            stage.root,
            "update-collection",
            {"collection": collection, "operations": [o.describe() for o in ops]},
        )
        res.run_id = run.id
        manifest = stage.manifest.copy()
        stage_collection(stage, manifest, collection, doc, run, LoadResult(run.id))
        audit = audit_table(
            run.id,
            datetime.now(UTC),
            "update-collection",
            pa.array([collection]),
            pa.array([collection]),
            pa.array([res.changed], pa.list_(pa.string())),
            pa.array([None if created else _canonical.content_hash(before)], pa.string()),
            pa.array([_canonical.content_hash(doc)]),
        )
        res.seconds = time.perf_counter() - t0
        res.stage_version = commit(
            stage, manifest, run, "ok", {"changed_paths": len(res.changed)}, [audit], {"seconds": round(res.seconds, 3)}
        )
    return res


def _split(path: str) -> tuple[str, ...]:
    from stacbatch.edit._paths import parse_path

    return parse_path(path)


def _compile(stage: Stage, ops: list[Op]) -> list[Any]:
    """Collection values are constant SQL expressions (no item paths): evaluated once by DuckDB."""
    steps: list[Step] = []
    con = stage.connection
    for op in ops:
        if op.kind != "set":
            steps.append(Step(op.kind, op.path, op.to, None))
            continue
        assert op.expr is not None
        what = f"--set {format_path(op.path)}"
        _sql.check_expression(op.expr, what)
        try:
            typ = str(con.sql(f"DESCRIBE SELECT ({op.expr}) AS v").fetchall()[0][1])
            (text,) = con.sql(f"SELECT ({to_json_sql(f'({op.expr})', typ)})::VARCHAR").fetchall()[0]
        except duckdb.Error as err:
            raise QueryError(f"{what} {op.expr!r}: {_sql.one_line(err)}") from None
        bad = _finite.non_finite_path(text) if text is not None else None
        if bad is not None:
            raise QueryError(f"{what} {op.expr!r}: {_finite.joined(format_path(op.path), bad)} is {_finite.REASON}")
        steps.append(Step("set", op.path, None, text))
    return steps
