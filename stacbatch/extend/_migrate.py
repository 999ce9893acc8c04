"""``migrate``: STAC 1.0.0 items to 1.1.0 as one batch edit, with the result PySTAC's own migration gives.

PySTAC (``pystac.serialization.migrate.migrate_to_latest`` with its extension hooks) is the definition; the tests
compare every migrated item with it. What it does to a 1.0.0 item, and how it is done here (SQL over each item,
through ``update``: one atomic commit, audit rows, ``properties.updated``):

- ``stac_version`` becomes 1.1.0; ``properties.license`` ``various``/``proprietary`` becomes ``other``;
- ``stac_extensions`` is made a list if absent; each earlier schema URL or short id of an extension PySTAC knows is
  replaced, in place, by its current URL (read from the installed PySTAC's hooks); short ids of removed
  extensions are dropped;
- projection (listed in any version): ``proj:epsg`` leaves ``properties`` and each asset; where it was set (not
  0, null or empty) and ``proj:code`` is not, ``proj:code`` becomes ``EPSG:<epsg>``;
- classification v1.0.0: ``color-hint`` in each asset's ``classification:classes`` becomes ``color_hint``.

Items PySTAC would change in ways not done here are left as they are and reported: other versions than 1.0.0
(PySTAC migrates those from older shapes: migrate them with it first), and extensions whose hook reshapes fields
(storage v1.0.0, and any hook of a later PySTAC that stacbatch does not know).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stacbatch.edit import EditResult, Op, compile_where, update
from stacbatch.engine import _sql
from stacbatch.errors import InputError, QueryError
from stacbatch.extend._sqljson import as_map, let, staged_property
from stacbatch.stage import Stage

TARGETS = ("1.1.0",)
FROM_VERSION = "1.0.0"
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
CLASSIFICATION_V1 = "https://stac-extensions.github.io/classification/v1.0.0/schema.json"
#: hooks whose own ``migrate`` changes nothing but the URL for 1.0.0 items (their work is for older versions, or a
#: warning), and those whose field changes are done here
_URL_ONLY = {"SarExtensionHooks", "EOExtensionHooks", "LabelExtensionHooks", "FileExtensionHooks", "MLMExtensionHooks"}
_DONE_HERE = {"ProjectionExtensionHooks", "ClassificationExtensionHooks"}


@dataclass
class MigrateResult:
    to: str
    edit: EditResult
    #: why -> items left as they were
    not_migrated: dict[str, int] = field(default_factory=dict)
    validation: Any = None


@dataclass(frozen=True)
class _Hooks:
    """What PySTAC's hooks do to Items: earlier id -> current URL, ids to drop, and the ids of extensions whose
    items are refused (their hook reshapes fields)."""

    swaps: dict[str, str]
    removed: tuple[str, ...]
    refused: dict[str, str]
    projection_ids: tuple[str, ...]
    projection_prefix: str


def _hooks() -> _Hooks:
    import pystac
    from pystac.extensions.base import VERSION_REGEX
    from pystac.extensions.hooks import ExtensionHooks
    from pystac.serialization.migrate import _get_removed_extension_migrations

    registry = pystac.EXTENSION_HOOKS
    registry._discover()
    swaps: dict[str, str] = {}
    refused: dict[str, str] = {}
    projection: tuple[str, ...] = ()
    prefix = ""
    for uri, hook in registry.hooks.items():
        if pystac.STACObjectType.ITEM not in hook._get_stac_object_types():
            continue
        kind = type(hook).__name__
        plain = type(hook).migrate is ExtensionHooks.migrate
        if kind == "StorageExtensionHooks":
            for prev in hook.prev_extension_ids:
                refused[prev] = "storage v1 fields become storage:schemes in v2 (PySTAC migrates those)"
            continue
        if not plain and kind not in _URL_ONLY | _DONE_HERE:
            for prev in hook.prev_extension_ids:
                refused[prev] = f"PySTAC's {kind} changes its fields, which stacbatch does not do yet"
            continue
        for prev in hook.prev_extension_ids:
            swaps[prev] = uri
        if kind == "ProjectionExtensionHooks":
            projection = (*sorted(hook.prev_extension_ids), uri)
            prefix = VERSION_REGEX.split(uri)[0] + "/"
    removed = tuple(
        sorted(
            ext
            for ext, (types, _fn) in _get_removed_extension_migrations().items()
            if types is None or pystac.STACObjectType.ITEM in types
        )
    )
    return _Hooks(swaps, removed, refused, projection, prefix)


def _list(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(_sql.literal(v) for v in values) + "]::VARCHAR[]"


def _staged(stage: Stage, path: str) -> bool:
    """Whether some staged item has ``path``, one outside ``properties`` (``item.stac_extensions``): asked of the
    items (the column plans list properties only: ``staged_property``)."""
    try:
        compile_where(stage.connection, f"{path} IS NULL")
    except QueryError:
        return False
    return True


def plan(stage: Stage, hooks: _Hooks) -> list[Op]:
    """The operations for the 1.0.0 items (the selection is the caller's)."""
    exts = (
        "coalesce(TRY_CAST(item.stac_extensions AS VARCHAR[]), [])"
        if _staged(stage, "item.stac_extensions")
        else "[]::VARCHAR[]"
    )
    swaps = "MAP {" + ", ".join(f"{_sql.literal(a)}: {_sql.literal(b)}" for a, b in sorted(hooks.swaps.items())) + "}"
    swapped = f"list_transform(x, lambda u: coalesce({swaps}[u], u))"
    new_exts = f"list_filter({swapped}, lambda u: NOT list_contains({_list(hooks.removed)}, u))"
    # stac_extensions is set last: the expressions before it read the list as staged (a later expression sees
    # what an earlier operation wrote), and they test for the earlier versions' URLs
    ops = [Op("set", ("stac_version",), expr=_sql.literal(TARGETS[-1]))]
    if staged_property(stage, "license"):
        lic = "CASE WHEN properties.license::VARCHAR IN ('various', 'proprietary') THEN 'other' END"
        ops.append(Op("set", ("properties", "license"), expr=lic, keep_if_null=True))
    has_proj = let(
        exts,
        "x",
        f"len(list_filter(x, lambda u: starts_with(u, {_sql.literal(hooks.projection_prefix)}) "
        f"OR list_contains({_list(hooks.projection_ids)}, u))) > 0",
    )
    if hooks.projection_ids and staged_property(stage, "proj:epsg"):
        epsg = 'properties."proj:epsg"'
        text = f"CAST({epsg} AS VARCHAR)"
        truthy = f"coalesce({text} NOT IN ('0', '0.0', '-0.0', '', 'false', '[]', '{{}}', 'null'), false)"
        code_unset = 'properties."proj:code" IS NULL' if staged_property(stage, "proj:code") else "true"
        code = f"CASE WHEN ({has_proj}) AND {truthy} AND {code_unset} THEN 'EPSG:' || {text} END"
        ops.append(Op("set", ("properties", "proj:code"), expr=code, keep_if_null=True))
        ops.append(Op("unset", ("properties", "proj:epsg"), expr=has_proj))
    if hooks.projection_ids or CLASSIFICATION_V1 in hooks.swaps:
        ops.append(Op("set", ("assets",), expr=_assets(exts, has_proj)))
    ops.append(Op("set", ("stac_extensions",), expr=let(exts, "x", f"to_json({new_exts})")))
    return ops


def _assets(exts: str, has_proj: str) -> str:
    """Each asset: ``proj:epsg`` -> ``proj:code`` (projection listed), ``color-hint`` -> ``color_hint`` in its
    classification classes (classification v1.0.0 listed); the object as it was where neither applies."""
    j = "(e.value -> 'proj:epsg')"
    text = f"CASE WHEN json_type({j}) = 'VARCHAR' THEN {j} ->> '$' ELSE {j}::VARCHAR END"
    truthy = f"coalesce({j}::VARCHAR NOT IN ('0', '0.0', '-0.0', '\"\"', 'false', '[]', '{{}}', 'null'), false)"
    code_unset = "coalesce(json_type(e.value -> 'proj:code'), 'NULL') = 'NULL'"
    dropped = "json_merge_patch(e.value, '{\"proj:epsg\": null}')"
    code = f"json_object('proj:code', 'EPSG:' || {text})"
    moved = f"CASE WHEN {truthy} AND {code_unset} THEN json_merge_patch({dropped}, {code}) ELSE {dropped} END"
    proj = f"CASE WHEN f.p AND json_exists(e.value, '$.\"proj:epsg\"') THEN {moved} ELSE e.value END"
    renamed = (
        "to_json(map_from_entries(list_transform(list_filter(map_entries(CAST(c AS MAP(VARCHAR, JSON))), "
        "lambda kv: kv.key <> 'color_hint'), lambda kv: struct_pack(key := CASE WHEN kv.key = 'color-hint' "
        "THEN 'color_hint' ELSE kv.key END, value := kv.value))))"
    )
    each_class = f"CASE WHEN json_type(c) = 'OBJECT' AND json_exists(c, '$.\"color-hint\"') THEN {renamed} ELSE c END"
    classes = f"list_transform(CAST(a -> 'classification:classes' AS JSON[]), lambda c: {each_class})"
    cls = (
        f"CASE WHEN f.k AND json_type(a -> 'classification:classes') = 'ARRAY' "
        f"THEN json_merge_patch(a, json_object('classification:classes', to_json({classes}))) ELSE a END"
    )
    per_asset = f"list_transform([{proj}], lambda a: {cls})[1]"
    each = f"list_transform(map_entries(m), lambda e: struct_pack(key := e.key, value := {per_asset}))"
    rebuilt = let(as_map("item.assets"), "m", f"to_json(map_from_entries({each}))")
    k = let(exts, "x", f"list_contains(x, {_sql.literal(CLASSIFICATION_V1)})")
    touched = "(contains(item.assets::VARCHAR, '\"proj:epsg\"') OR contains(item.assets::VARCHAR, '\"color-hint\"'))"
    body = f"CASE WHEN json_type(item.assets) = 'OBJECT' AND {touched} THEN {rebuilt} ELSE item.assets END"
    return let(f"struct_pack(p := {has_proj}, k := {k})", "f", body)


def migrate(
    stage_path: str,
    to: str = "1.1.0",
    *,
    where: str | None = None,
    collections: list[str] | None = None,
    ids_file: str | None = None,
    dry_run: bool = False,
    workers: int | None = None,
    validate: bool = True,
    validate_options: Any = None,
) -> MigrateResult:
    """Migrate the selected 1.0.0 items to ``to`` (1.1.0), as PySTAC does; report the items left and why."""
    if to not in TARGETS:
        raise InputError(f"migrate --to {to}: stacbatch migrates to {', '.join(TARGETS)}")
    hooks = _hooks()
    stage = Stage.open(stage_path)
    scope = " AND ".join(f"({p})" for p in (where, _in_collections(collections)) if p) or "true"
    exts = "coalesce(TRY_CAST(item.stac_extensions AS VARCHAR[]), [])"
    if not _staged(stage, "item.stac_extensions"):
        exts = "[]::VARCHAR[]"
    refused = f"list_has_any({exts}, {_list(sorted(hooks.refused))})" if hooks.refused else "false"
    res = MigrateResult(to, EditResult("migrate", None, dry_run))
    con = stage.connection
    # (the predicates in the item-path language, compiled to the view's SQL like a --where)
    version = compile_where(con, "item.stac_version::VARCHAR")
    ours = compile_where(con, f"item.stac_version::VARCHAR = {_sql.literal(FROM_VERSION)}")
    counts = con.sql(
        f"SELECT {version}, {ours}, {compile_where(con, refused)}, count(*) "
        f"FROM items WHERE {compile_where(con, scope)} GROUP BY ALL"
    ).fetchall()
    for v, ours, r, n in counts:
        if not ours and v != to:
            key = f"stac_version {v}: stacbatch migrates 1.0.0 items (migrate these with PySTAC first)"
            res.not_migrated[key] = res.not_migrated.get(key, 0) + n
        elif ours and r:
            key = "an extension whose fields change shape (storage v1.0.0, ...): PySTAC migrates those"
            res.not_migrated[key] = res.not_migrated.get(key, 0) + n
    selection = f"({scope}) AND item.stac_version::VARCHAR = {_sql.literal(FROM_VERSION)} AND NOT ({refused})"
    whole = where is None and ids_file is None  # collections are migrated with all their items, not a part
    res.edit = update(
        stage_path,
        plan(stage, hooks),
        where=selection,
        ids_file=ids_file,
        dry_run=dry_run,
        workers=workers,
        command="migrate",
        collections=(lambda s: _collection_docs(s, collections)) if whole else None,
    )
    if validate and not dry_run and (res.edit.changed or res.edit.collections_changed) and res.edit.run_id:
        from stacbatch.validate import validate as run_validation

        res.validation = run_validation(
            stage_path, options=validate_options, where=f"stage_run = {_sql.literal(res.edit.run_id)}"
        )
    return res


def _collection_docs(stage: Stage, chosen: list[str] | None) -> dict[str, dict[str, Any]]:
    """The staged Collections (those ``chosen``, else all) older than 1.1.0, migrated by PySTAC itself (a few
    documents: PySTAC's own function on each is its result exactly)."""
    import warnings

    from pystac.serialization import identify_stac_object
    from pystac.serialization.migrate import migrate_to_latest

    out = {}
    for cid in sorted(chosen or stage.manifest.collections):
        doc = stage.collection_json(cid)
        if not isinstance(doc, dict) or doc.get("stac_version") == TARGETS[-1]:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PySTAC warns about fields a newer extension version dropped
            try:
                out[cid] = migrate_to_latest(doc, identify_stac_object(doc))
            except Exception:  # a document PySTAC cannot read stays as it is
                continue
    return out


def _in_collections(collections: list[str] | None) -> str | None:
    if not collections:
        return None
    return f"collection IN ({', '.join(_sql.literal(c) for c in collections)})"
