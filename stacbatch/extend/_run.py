"""``extend``: apply an extension to the selected items of a stage, as one ``update`` (same atomic commit, audit
log and ``properties.updated`` stamping), then validate what changed."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stacbatch.edit import EditResult, Op, compile_where, update
from stacbatch.engine import _sql
from stacbatch.errors import InputError
from stacbatch.extend._base import Extension, Found, Plan, find
from stacbatch.stage import Stage, read_ids, select_rows, selection


@dataclass
class ExtendResult:
    extension: str
    schema_url: str
    edit: EditResult
    #: rule -> (items selected that it cannot extend, why): reported, left as they were
    not_extended: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: items in the selection a lookup found nothing for (dgeo: no asset href with a CID), reported as not extended
    #: href (or other input) -> why it could not be used (an asset that could not be read, say)
    problems: dict[str, str] = field(default_factory=dict)
    #: nothing was selected: the data files and the extension's inputs are as its last run left them (``Plan.memo``)
    up_to_date: bool = False
    #: the validation of the items this run changed (``stacbatch.validate``'s result), when asked and any changed
    validation: Any = None


def stac_extensions_op(url: str | Sequence[str], any_listed: bool = True) -> Op:
    """``stac_extensions`` with each of ``url`` appended unless it is there: each schema URL exactly once, and
    unchanged on a second run. ``any_listed``: whether some staged item has ``stac_extensions`` at all (else it is
    made)."""
    from stacbatch.extend._sqljson import let

    urls = "[" + ", ".join(_sql.literal(u) for u in ([url] if isinstance(url, str) else url)) + "]"
    if not any_listed:
        return Op("set", ("stac_extensions",), expr=f"to_json({urls})")
    have = "coalesce(CAST(item.stac_extensions AS VARCHAR[]), [])"
    added = f"to_json(list_concat(h, list_filter({urls}, lambda u: NOT list_contains(h, u))))"
    expr = let(have, "h", f"CASE WHEN list_has_all(h, {urls}) THEN item.stac_extensions ELSE {added} END")
    return Op("set", ("stac_extensions",), expr=expr)


def check_config(ext: Extension, config: dict[str, Any] | None) -> dict[str, Any]:
    """``config`` against the extension's configuration schema (a file's config is checked where it is read,
    with its lines)."""
    import jsonschema

    config = config or {}
    errors = list(jsonschema.Draft202012Validator(ext.config_schema).iter_errors(config))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        where = ".".join(str(k) for k in best.absolute_path) or "(top level)"
        raise InputError(f"extension {ext.name}: config: {where}: {best.message}")
    return config


def read_config(ext: Extension, path: str) -> dict[str, Any]:
    """A configuration file (YAML/JSON), checked against the extension's schema: ``FILE:LINE: key: problem``.
    The file paths it names (the extension's ``path_keys``) are taken relative to the file."""
    from stacbatch.mapping import read_mapping

    data = read_mapping(path, ext.config_schema).data
    config = data if isinstance(data, dict) else {}
    for keys in ext.path_keys:  # file paths in a configuration file are relative to that file
        parent, leaf = config, keys[-1]
        for k in keys[:-1]:
            parent = parent.get(k) if isinstance(parent, dict) else None  # type: ignore[assignment]
        value = parent.get(leaf) if isinstance(parent, dict) else None
        if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            parent[leaf] = str(Path(path).resolve().parent / value)
    return config


def _and(*parts: str | None) -> str | None:
    kept = [f"({p})" for p in parts if p]
    return " AND ".join(kept) if kept else None


def extend(
    stage_path: str,
    extension: str | Extension,
    config: dict[str, Any] | None = None,
    *,
    where: str | None = None,
    collections: list[str] | None = None,
    ids_file: str | None = None,
    dry_run: bool = False,
    workers: int | None = None,
    validate: bool = True,
    validate_options: Any = None,
) -> ExtendResult:
    """Apply ``extension`` (a name, a file, ``module:attribute``, or an ``Extension``) with ``config`` to the
    items ``where``/``collections``/``ids_file`` select. Idempotent: a second run changes nothing and rewrites no
    file. With ``validate``, the items it changed are validated afterwards (their verdicts recorded in the stage;
    ``validate_options``: ``stacbatch.validate.Options``, e.g. a schema folder for the extension's schema)."""
    found = find(extension) if isinstance(extension, str) else Found(extension, "given")
    ext = found.extension
    config = check_config(ext, config)
    stage = Stage.open(stage_path)
    digest = ext.digest(config) if ids_file is None and not dry_run else None
    memo = _Memo(stage, ext.name, digest, where, collections) if digest else None
    if memo is not None and memo.current():
        res = ExtendResult(ext.name, ext.schema_url(config), EditResult("extend", None, dry_run), up_to_date=True)
        return res
    plan: Plan = ext.plan(config, stage)
    if not plan.rules:
        raise InputError(f"extension {ext.name}: the configuration gives nothing to do")
    scope = _and(where, _collections(collections))
    applies = " OR ".join(f"({r.applies})" for r in plan.rules)
    con = stage.connection
    listed = bool(con.sql("SELECT 1 FROM items WHERE json_exists(item, '/stac_extensions') LIMIT 1").fetchall())
    ops = [op for r in plan.rules for op in r.ops] + [stac_extensions_op([plan.schema_url, *plan.also], listed)]
    res = ExtendResult(ext.name, plan.schema_url, EditResult("extend", None, dry_run))
    ids = read_ids(ids_file) if ids_file else None
    for rule in plan.rules:
        if rule.cannot:
            predicate, _missing = selection(stage, compile_where(con, _and(scope, rule.cannot)), ids, True)
            n = sum(len(rows) for rows in select_rows(stage, predicate).values())
            if n:
                res.not_extended[rule.name] = (n, rule.why)
    res.edit = update(
        stage_path,
        ops,
        where=_and(scope, applies),
        ids_file=ids_file,
        dry_run=dry_run,
        workers=workers,
        command="extend",
        lookups=list(plan.lookups),
        collections=_collection_docs(plan, collections) if where is None and ids_file is None else None,
    )
    if plan.problems is not None:
        res.problems = plan.problems()
    if plan.lookups:  # the items a lookup found nothing to do for
        n = _count(stage, scope) - res.edit.selected
        if n > 0:
            res.not_extended[plan.rules[0].name] = (
                n,
                "left as they were: no asset with a CID (none in the manifest, none read), or listed already",
            )
    if memo is not None and res.edit.run_id and not res.edit.failed and not res.problems:
        memo.record()
    if validate and not dry_run and (res.edit.changed or res.edit.collections_changed) and res.edit.run_id:
        from stacbatch.validate import validate as run_validation

        res.validation = run_validation(
            stage_path, options=validate_options, where=f"stage_run = {_sql.literal(res.edit.run_id)}"
        )
    return res


class _Memo:
    """What a run of an extension was given and what data files it left: a file under the stage's ``cache/``
    (a cache: lost or stale, the next run does the whole work). Validation afterwards changes no data file."""

    def __init__(self, stage: Stage, name: str, digest: str, where: str | None, collections: list[str] | None) -> None:
        import orjson

        from stacbatch.engine import _fs

        self.root, self.fs = stage.root, stage.fs
        self.path = _fs.join(stage.root, "cache", f"extend-{name}.json")
        self.key = orjson.dumps({"digest": digest, "where": where, "collections": sorted(collections or [])}).decode()

    def _files(self) -> str:
        import xxhash

        from stacbatch.stage import Stage

        manifest = Stage.open(self.root).manifest
        names = sorted(f["path"] for f in manifest.files)
        names += sorted(f"{c}:{(m or {}).get('json')}" for c, m in manifest.collections.items())
        return xxhash.xxh3_128("\n".join(names).encode()).hexdigest()

    def current(self) -> bool:
        import orjson

        try:
            with self.fs.open(self.path, "rb") as f:
                memo = orjson.loads(f.read())
        except (OSError, orjson.JSONDecodeError):
            return False
        return isinstance(memo, dict) and memo.get("key") == self.key and memo.get("files") == self._files()

    def record(self) -> None:
        import orjson

        from stacbatch.engine import _fs

        self.fs.makedirs(_fs.join(self.root, "cache"), exist_ok=True)
        _fs.atomic_write_bytes(self.fs, self.path, orjson.dumps({"key": self.key, "files": self._files()}))


def _collection_docs(plan: Plan, chosen: list[str] | None) -> Callable[[Stage], dict[str, dict[str, Any]]] | None:
    """The staged Collections (``chosen``, else all) the plan extends, their ``stac_extensions`` given the
    schema URLs once. Not with ``--where``/``--ids``: those pick items, not their collections."""
    extend_one = plan.collections
    if extend_one is None:
        return None

    def docs(stage: Stage) -> dict[str, dict[str, Any]]:
        out = {}
        for cid in sorted(chosen or stage.manifest.collections):
            doc = stage.collection_json(cid)
            if not isinstance(doc, dict):
                continue
            new = extend_one(copy.deepcopy(doc))
            if new is None or new == doc:
                continue
            exts = [u for u in new.get("stac_extensions") or [] if isinstance(u, str)]
            new["stac_extensions"] = exts + [u for u in (plan.schema_url, *plan.also) if u not in exts]
            out[cid] = new
        return out

    return docs


def _count(stage: Stage, scope: str | None) -> int:
    where = compile_where(stage.connection, scope) if scope else None
    return int(stage.connection.sql(f"SELECT count(*) FROM items WHERE {where or 'true'}").fetchall()[0][0])


def _collections(collections: list[str] | None) -> str | None:
    if not collections:
        return None
    return f"collection IN ({', '.join(_sql.literal(c) for c in collections)})"
