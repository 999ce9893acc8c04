"""``update`` and ``delete``: select rows, rewrite the files that hold them (in parallel), commit once."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from stacbatch.edit._ops import Op, Step, compile_ops, rederive, sets_updated
from stacbatch.edit._rewrite import FileResult, apply_results, make_jobs, result_counts, run_jobs
from stacbatch.engine import _sql
from stacbatch.engine._progress import current
from stacbatch.errors import InputError
from stacbatch.stage import Run, Stage, commit, crash_point, lookup_parts, read_ids, select_rows, selection


@dataclass(frozen=True)
class Lookup:
    """Values per item joined in from outside the stage (a manifest of CIDs by href, say) and handed to the
    rewrite as column ``name`` of the rows the ``set`` expressions read. One SQL query over the whole selection
    finds them; DuckDB writes its rows to a Parquet part per data file (memory-bounded, spilling, nothing gathered
    in this process), and each rewrite job reads its part and combines its rows per item. Items the query gives no
    row are not selected, so the query leaves out the items that need nothing (a second run selects none)."""

    name: str
    #: the column's DuckDB type, e.g. ``MAP(VARCHAR, STRUCT(cid VARCHAR))`` (expressions are bound against it)
    type: str
    #: SQL over ``_rows`` (the selected items: the items view's columns, ``filename``, ``file_row_number``) that
    #: returns ``filename, file_row_number`` and value columns: the rows of the items to change, any number each
    query: str
    #: an SQL aggregate over the value columns of one item's rows giving its value (of ``type``)
    combine: str
    #: what the query reads: Arrow tables, or SQL queries (made views), registered under these names
    tables: dict[str, pa.Table | str] = field(default_factory=dict)
    #: more tables made from the selection before the query runs: ``prepare(stage, predicate)`` (see
    #: ``stage.query_rows``), e.g. CIDs hashed from the bytes of the selected items' assets
    prepare: Callable[[Stage, str], dict[str, pa.Table]] | None = None


@dataclass
class EditResult:
    command: str
    run_id: str | None
    dry_run: bool
    selected: int = 0
    changed: int = 0
    unchanged: int = 0
    files_rewritten: int = 0
    failed: int = 0
    unknown_ids: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    per_collection: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    stage_version: int = 0
    failures_file: str | None = None
    first_failures: list[dict[str, Any]] = field(default_factory=list)
    #: target path -> selected items left without it: its parent object is missing (see ``create_parents``)
    skipped: dict[str, int] = field(default_factory=dict)
    #: collections whose documents changed in the same commit (``collections`` of ``update``)
    collections_changed: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "selected": self.selected,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "files_rewritten": self.files_rewritten,
            "failed": self.failed,
            "unknown_ids": len(self.unknown_ids),
        }
        if self.skipped:
            out["skipped_missing_parent"] = dict(sorted(self.skipped.items()))
        return out


def update(
    stage_path: str,
    ops: list[Op],
    *,
    where: str | None = None,
    ids_file: str | None = None,
    dry_run: bool = False,
    ignore_unknown_ids: bool = False,
    workers: int | None = None,
    create_parents: bool = False,
    command: str = "update",
    lookups: list[Lookup] | None = None,
    collections: Callable[[Stage], dict[str, dict[str, Any]]] | None = None,
) -> EditResult:
    """Apply set/unset/rename operations to the selected items; changed items get ``properties.updated``. A target
    whose parent object an item lacks (``assets.B04.href`` on an item without asset B04) is skipped for that item
    and counted in ``EditResult.skipped``, unless ``create_parents``. An item for which an expression gives NaN or
    an infinity fails (it is left as it was); the others are updated. ``command`` names the run (``extend``
    applies an extension through here, with ``lookups``: values joined in from outside the stage). ``collections``:
    called under the stage's lock, gives collection documents to stage in the same commit (``migrate``'s), each
    stamped ``updated`` and audited like ``update-collection``'s."""
    if not ops:
        raise InputError("nothing to do: give --set, --unset, --rename or --file")
    return _edit(
        command,
        stage_path,
        ops,
        where,
        ids_file,
        dry_run,
        ignore_unknown_ids,
        workers,
        create_parents,
        lookups or [],
        collections,
    )


def delete(
    stage_path: str,
    *,
    where: str | None = None,
    ids_file: str | None = None,
    dry_run: bool = False,
    ignore_unknown_ids: bool = False,
    workers: int | None = None,
) -> EditResult:
    """Remove the selected items; each leaves a tombstone (collection, id, hash, time, run) and an audit row."""
    return _edit("delete", stage_path, [], where, ids_file, dry_run, ignore_unknown_ids, workers)


def _edit(
    command: str,
    stage_path: str,
    ops: list[Op],
    where: str | None,
    ids_file: str | None,
    dry_run: bool,
    ignore_unknown_ids: bool,
    workers: int | None,
    create_parents: bool = False,
    lookups: list[Lookup] | None = None,
    collections: Callable[[Stage], dict[str, dict[str, Any]]] | None = None,
) -> EditResult:
    t0 = time.perf_counter()
    lookups = lookups or []
    ids = read_ids(ids_file) if ids_file else None
    stage = Stage.open(stage_path)
    with stage.write_lock(), contextlib.ExitStack() as stack:
        stage = Stage.open(stage_path)  # re-read under the lock
        current().phase(f"{command}: select items", total=None, unit="rows")
        compiled = compile_ops(stage.connection, _lookup_view(stage, lookups), ops, where)
        predicate, missing = selection(stage, compiled.where, ids, ignore_unknown_ids)
        rows = select_rows(stage, predicate)
        parts_dir = tempfile.mkdtemp(prefix="stacbatch-lookup-") if lookups else None
        stack.callback(lambda: parts_dir and shutil.rmtree(parts_dir, ignore_errors=True))
        extra = _look_up(stage, lookups, predicate, rows, parts_dir or "")
        run_time = datetime.now(UTC)
        run = (
            None
            if dry_run
            else Run(
                stage.fs,
                stage.root,
                command,
                {
                    "where": where,
                    "ids": ids_file,
                    "operations": [o.describe() for o in ops],
                    **({"create_parents": True} if create_parents else {}),
                },
            )
        )
        res = EditResult(command, run.id if run else None, dry_run, unknown_ids=missing)
        jobs = make_jobs(
            stage,
            stage.manifest,
            rows,
            command,
            run.id if run else "dry-run",
            run_time,
            steps=compiled.steps,
            auto_updated=not sets_updated(ops),
            rederive=rederive(ops),
            dry_run=dry_run,
            overlapping=compiled.overlapping,
            create_parents=create_parents,
            columns=named_columns(stage.manifest, compiled.steps),
        )
        for job in jobs:
            job.extra = extra.get(job.entry["path"], {})
        results: list[FileResult] = run_jobs(jobs, workers)
        counts = result_counts(results)
        res.selected, res.changed, res.files_rewritten = (
            counts["selected"],
            counts["changed"],
            counts["files_rewritten"],
        )
        for r in results:
            res.samples += r.samples
            for path, n in r.skipped.items():
                res.skipped[path] = res.skipped.get(path, 0) + n
            if r.changed:
                c = r.entry["collection"]
                res.per_collection[c] = res.per_collection.get(c, 0) + r.changed
        res.samples = res.samples[:3]
        failures = [f for r in results for f in r.failures]
        res.failed = len(failures)
        res.unchanged = res.selected - res.changed - res.failed
        if run is None:
            res.seconds = time.perf_counter() - t0
            return res
        for f in failures:
            run.fail(f)
        res.failures_file = run.failures_path if run.failure_count else None
        res.first_failures = run.first_failures
        manifest = stage.manifest.copy()
        apply_results(manifest, results)
        audit = [r.audit for r in results if r.audit is not None and r.changed]
        if collections is not None:
            audit += _stage_collections(stage, manifest, collections(stage), run, run_time, res)
        crash_point("after_write")
        res.seconds = time.perf_counter() - t0
        status = "partial" if res.failed else "ok"
        res.stage_version = commit(
            stage, manifest, run, status, res.counts(), _nonempty(audit), {"seconds": round(res.seconds, 3)}
        )
    return res


def _stage_collections(
    stage: Stage,
    manifest: Any,
    docs: dict[str, dict[str, Any]],
    run: Run,
    when: datetime,
    res: EditResult,
) -> list[pa.Table]:
    """Stage the changed collection documents (``updated`` stamped) into ``manifest``; their audit rows (as
    ``update-collection`` writes them)."""
    from stacbatch.kernel import _canonical
    from stacbatch.stage import LoadResult, audit_table, stage_collection

    out = []
    stamp = when.isoformat(timespec="microseconds").replace("+00:00", "Z")
    for cid, doc in sorted(docs.items()):
        before = stage.collection_json(cid)
        if before is not None and _canonical.content_hash(before) == _canonical.content_hash(doc):
            continue
        doc = {**doc, "updated": stamp}
        stage_collection(stage, manifest, cid, doc, run, LoadResult(run.id))
        res.collections_changed.append(cid)
        out.append(
            audit_table(
                run.id,
                when,
                "update-collection",
                pa.array([cid]),
                pa.array([cid]),
                pa.array([["collection"]], pa.list_(pa.string())),
                pa.array([_canonical.content_hash(before) if before is not None else None], pa.string()),
                pa.array([_canonical.content_hash(doc)]),
            )
        )
    return out


def _lookup_view(stage: Stage, lookups: list[Lookup]) -> str:
    """The view expressions are bound against: ``items``, plus a typed NULL column per lookup."""
    if not lookups:
        return "items"
    for lookup in lookups:
        for name, table in lookup.tables.items():
            if isinstance(table, str):
                stage.connection.execute(f"CREATE OR REPLACE TEMP VIEW {_sql.ident(name)} AS {table}")
            else:
                stage.connection.register(name, table)
    cols = ", ".join(f"NULL::{lk.type} AS {_sql.ident(lk.name)}" for lk in lookups)
    stage.connection.execute(f"CREATE OR REPLACE TEMP VIEW _items_looked_up AS SELECT *, {cols} FROM items")
    return "_items_looked_up"


def _look_up(
    stage: Stage, lookups: list[Lookup], predicate: str, rows: dict[str, list[int]], out: str
) -> dict[str, dict[str, tuple[str, str]]]:
    """Run the lookups over the selection: narrow ``rows`` (in place) to the items each has rows for, and return,
    per file, each lookup's part (a Parquet folder) and combining aggregate."""
    extra: dict[str, dict[str, tuple[str, str]]] = {}
    for n, lookup in enumerate(lookups):
        if lookup.prepare is not None:
            for name, table in lookup.prepare(stage, predicate).items():
                stage.connection.register(name, table)
        got = lookup_parts(stage, predicate, lookup.query, os.path.join(out, str(n))) if rows else {}
        for path in list(rows):
            if path not in got:
                del rows[path]
                extra.pop(path, None)
                continue
            hit_rows, part = got[path]
            kept = np.intersect1d(np.asarray(rows[path], np.int64), hit_rows)
            if not len(kept):
                del rows[path]
                extra.pop(path, None)
                continue
            rows[path] = kept.tolist()
            extra.setdefault(path, {})[lookup.name] = (part, lookup.combine)
    return extra


def named_columns(manifest: Any, steps: list[Step]) -> dict[str, tuple[str, str]]:
    """The items view's property columns that ``set`` expressions may name (their text mentions the name): each
    rewrite job reads them from the item text, which always agrees with the column."""
    texts = [step.sql for step in steps if step.sql]
    if not texts:
        return {}
    import re

    from stacbatch.stage import property_columns

    text = "\n".join(texts).lower()

    def named(shown: str) -> bool:
        low = shown.lower()
        if '"' + low.replace('"', '""') + '"' in text:
            return True
        return (
            re.fullmatch(r"[a-z_][a-z0-9_]*", low) is not None
            and re.search(rf'(?<![\w."]){low}(?![\w"])', text) is not None
        )

    return {shown: nt for shown, nt in property_columns(manifest).items() if named(shown)}


def _nonempty(tables: list[pa.Table]) -> list[pa.Table]:
    return [t for t in tables if t.num_rows]
