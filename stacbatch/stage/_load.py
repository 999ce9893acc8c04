"""``load``: sources -> parse (parallel) -> partition writer -> last-wins reconcile -> atomic manifest switch."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stacbatch.engine import _fs, _json, _sql
from stacbatch.engine._layout import COLLECTIONS, TIME_BUCKETS, TMP, encode
from stacbatch.engine._pool import PREFORK_MIN_BYTES, Workers, default_workers
from stacbatch.engine._progress import current
from stacbatch.errors import InputError, StageError
from stacbatch.kernel import _canonical
from stacbatch.kernel._rows import STAGE_SCHEMA
from stacbatch.sources import plan_sources
from stacbatch.stage._audit import audit_table, load_audit
from stacbatch.stage._catalogs import stage_catalogs, walked_parser
from stacbatch.stage._commit import commit, crash_point
from stacbatch.stage._files import sort_for_stage, stage_columns, write_stage_file
from stacbatch.stage._manifest import Manifest
from stacbatch.stage._parse import ParseResult
from stacbatch.stage._plans import plan_of, plans_of
from stacbatch.stage._runs import Run
from stacbatch.stage._stage import Stage
from stacbatch.stage._writer import PartitionWriter

DEFAULT_BATCH_SIZE = 2_000
#: Below this much input, worker start-up costs more than it saves.
PARALLEL_MIN_BYTES = PREFORK_MIN_BYTES


@dataclass
class LoadResult:
    run_id: str
    read: int = 0
    staged: int = 0
    new: int = 0
    replaced: int = 0
    duplicates: int = 0
    failed: int = 0
    collections_staged: int = 0
    #: Catalogs of static catalog trees staged (their structure is kept for ``emit --format json``)
    catalogs_staged: int = 0
    files_written: int = 0
    seconds: float = 0.0
    failures_file: str | None = None
    first_failures: list[dict[str, Any]] = field(default_factory=list)
    stage_version: int = 0
    #: for STAC API sources: items, pages, requests, retries, failed queries, seconds
    api: Any = None
    #: for STAC API sources: the queries left when the run stopped at a checkpoint, and whether all were done
    api_pending: list[dict[str, Any]] = field(default_factory=list)
    api_done: bool = True
    #: for ``load --mapping``: per source, rows read / made items / failed, and per output field set/defaulted/failed
    mapping: dict[str, Any] = field(default_factory=dict)
    #: stacbatch stages found inside source folders and left out (their files are not items to load)
    skipped_stages: list[str] = field(default_factory=list)
    #: property columns: values not of their column's type (per name; NULL in the column, kept in the text) and
    #: names kept in the text only (and why), as this load's files report them
    not_of_type: dict[str, int] = field(default_factory=dict)
    text_only: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "read",
                "staged",
                "new",
                "replaced",
                "duplicates",
                "failed",
                "collections_staged",
                "files_written",
            )
        }


def load(
    stage_path: str,
    sources: list[str],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    time_bucket: str | None = None,
    api: Any = None,
    mapped: Callable[[str, int], Any] | None = None,
    queryables: dict[str, dict[str, str]] | None = None,
) -> LoadResult:
    """Stage items from files, folders, static catalogs, stac-geoparquet and STAC APIs; replace (collection, id)
    matches.

    ``api``: options for STAC API sources (``stacbatch.api.ApiOptions``). ``mapped``: makes each source a mapped
    source from its path and a batch size in rows (``stacbatch.mapping.MappedSource`` bound to a mapping; the
    stage does not know mappings, ``stacbatch.workflow.load`` binds one). ``queryables``: declared column types,
    ``{collection or "*": {name: type}}``, kept in the stage's settings (``_queryables.read_declared`` reads them
    from a file)."""
    t0 = time.perf_counter()
    if time_bucket is not None and time_bucket not in TIME_BUCKETS:
        raise InputError(f"--time-bucket must be one of {', '.join(TIME_BUCKETS)}, got {time_bucket!r}")
    plan = plan_sources(sources, batch_size, api, mapped)
    stage = Stage.open_or_new(stage_path)
    with stage.write_lock():
        stage = Stage.open_or_new(stage_path)  # re-read under the lock: another writer may have committed
        manifest = stage.manifest.copy()
        if time_bucket is not None:
            if manifest.version > 0 and manifest.settings["time_bucket"] != time_bucket and manifest.files:
                raise InputError(
                    f"--time-bucket {time_bucket}: this stage already uses {manifest.settings['time_bucket']!r} "
                    "(it applies to new collections only); omit the option"
                )
            manifest.settings["time_bucket"] = time_bucket
        if queryables:
            declared = {k: dict(v) for k, v in (manifest.settings.get("queryables") or {}).items()}
            for scope, fields in queryables.items():
                declared[scope] = {**declared.get(scope, {}), **fields}
            manifest.settings["queryables"] = declared
        run = Run(stage.fs, stage.root, "load", {"sources": sources, "batch_size": batch_size})
        run_time = datetime.now(UTC)
        result = LoadResult(run_id=run.id)
        # (a collection staged before any item, from a file, has no partitioning yet: its first items choose it)
        partitioning = {c: m["partitioning"] for c, m in manifest.collections.items() if m.get("partitioning")}
        n_workers = workers if workers is not None else default_workers()
        # API pages stage inline unless --workers says otherwise: measured with the server on the same two cores,
        # worker processes lost more to the second decode and start-up than they gained
        if workers is None and plan.total_bytes < PARALLEL_MIN_BYTES:
            n_workers = 1
        for api_source in plan.api_sources:
            api_source.raw_pages = n_workers > 1
        # A collection an API source has finished can be written while it fetches others, when nothing else in
        # this load can add rows to it (one source): the last page is then followed by little more than a commit.
        early_writes = len(plan.paths) == 1 and len(plan.api_sources) == 1
        collections: dict[str, tuple[str, dict[str, Any]]] = {}
        lines_before: dict[str, int] = {}  # per source, lines in the byte ranges already taken
        # parse workers reuse freed heap (many same-sized kernel buffers); mapping workers allocate through
        # DuckDB and Arrow instead, and kept heap only raised their peak (1.3 -> 1.6 GB at 1M rows)
        keep_heap = not plan.mapped_sources
        with stage_tmp(stage, run.id) as spill, Workers(n_workers, keep_heap=keep_heap) as pool:
            writer = PartitionWriter(
                stage.fs,
                stage.root,
                run.id,
                manifest.settings,
                partitioning,
                spill,
                audit_keys=True,
                plans=plans_of(manifest),
            )
            # parse_routed, that also says which items hang from a walked catalog (see _catalogs.parse_walked)
            parse: Callable[[Any], tuple[ParseResult, pa.Table | None]] = walked_parser(
                batch_size, run.id, writer.placement()
            )
            members: list[pa.Table] = []
            progress = current()
            progress.phase("load: read")
            for res, walked in pool.ordered_map(parse, enumerate(plan.units())):
                if walked is not None:
                    members.append(walked)
                res.collections[:0] = plan.collections  # found by the catalog walker, in walk order
                plan.collections.clear()
                if res.relative_lines is not None:
                    source, lines = res.relative_lines
                    base = lines_before.get(source, 0)
                    for rec in res.failures:
                        if "line" in rec:
                            rec["line"] += base
                    lines_before[source] = base + lines
                if res.mapping is not None:
                    source_path, stats = res.mapping
                    next(m for m in plan.mapped_sources if m.path == source_path).stats.add(stats)
                _take(res, run, writer, collections, result)
                if res.done and early_writes:
                    writer.write_early(res.done)
                progress.advance(res.read)
                if plan.api_sources:
                    api_stats = plan.api_sources[0].stats
                    progress.total(api_stats.matched)
                    progress.detail(
                        f"{api_stats.pages:,} pages · {api_stats.requests:,} requests · {api_stats.retries:,} retries"
                    )
            progress.phase("load: write partitions", total=None, unit="rows")
            new_entries = writer.finish(pool)
            # A first load of its collections with distinct ids only inserts: its audit rows are the keys the
            # partition writers left (no query over the new files), read before the spill folder goes.
            ids_distinct = writer.ids_distinct()
            touched = {e["collection"] for e in new_entries}
            first = ids_distinct and not any(f["collection"] in touched for f in manifest.files)
            inserts = writer.audit_keys() if first else None
        _take_collections(plan.collections, run, collections, result)  # a catalog with collections but no items
        for source in plan.api_sources:
            for rec in source.failures:
                run.fail(rec)
                result.failed += 1
            result.api = source.stats
            result.api_pending = source.pending()
            result.api_done = source.exhausted
        for source in plan.mapped_sources:
            result.mapping[source.path] = source.stats
        result.skipped_stages = plan.skipped_stages
        for label, where, reason in plan.problems:
            rec = {"source": label, "reason": reason}
            if where:
                rec["location"] = where
            run.fail(rec)
            result.failed += 1
        crash_point("after_write")
        for cid, (_label, doc) in collections.items():
            stage_collection(stage, manifest, cid, doc, run, result)
        result.catalogs_staged, failed = stage_catalogs(
            stage, manifest, plan.catalog_trees, members, set(collections), run
        )
        result.failed += failed
        old_entries = [f for f in manifest.files if f["collection"] in touched]
        _reconcile(stage, manifest, writer.new_schemes, new_entries, run, result, ids_distinct)
        if inserts is not None:
            audit: list[pa.Table] = [
                audit_table(
                    run.id,
                    run_time,
                    "insert",
                    inserts["collection"],
                    inserts["id"],
                    None,
                    None,
                    inserts["content_hash"],
                )
            ]
            audit_written = None
        else:
            audit, audit_written = load_audit(stage.fs, stage.root, run.id, run_time, old_entries, new_entries)
        result.files_written = len(new_entries)
        for entry in new_entries:
            report = entry.get("columns") or {}
            for name, n in (report.get("misses") or {}).items():
                result.not_of_type[name] = result.not_of_type.get(name, 0) + int(n)
            for name, why in (report.get("text_only") or {}).items():
                result.text_only.setdefault(name, why)
        result.failures_file = run.failures_path if run.failure_count else None
        result.first_failures = run.first_failures
        result.seconds = time.perf_counter() - t0
        status = "partial" if result.failed else "ok"
        result.stage_version = commit(
            stage,
            manifest,
            run,
            status,
            result.counts(),
            audit,
            {"seconds": round(result.seconds, 3)}
            | (
                {"columns": {"not_of_type": result.not_of_type, "text_only": result.text_only}}
                if result.not_of_type or result.text_only
                else {}
            )
            | ({"mapping": {k: dataclasses.asdict(v) for k, v in result.mapping.items()}} if result.mapping else {}),
            audit_written=audit_written,
        )
    return result


@contextlib.contextmanager
def stage_tmp(stage: Stage, run_id: str) -> Iterator[str]:
    """Spill space for a load: inside a local stage (same disk, removed by the next write if we crash), else a
    local temporary folder."""
    if _fs.is_local(stage.fs):
        path = os.path.join(stage.root, TMP, run_id)
        os.makedirs(path, exist_ok=True)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        with tempfile.TemporaryDirectory(prefix="stacbatch-spill-") as d:
            yield d


def _take(
    res: ParseResult,
    run: Run,
    writer: Any,
    collections: dict[str, tuple[str, dict[str, Any]]],
    result: LoadResult,
) -> None:
    result.read += res.read
    for rec in res.failures:
        run.fail(rec)
    result.failed += len(res.failures)
    _take_collections(res.collections, run, collections, result)
    writer.add_parts(res.parts)


def _take_collections(
    found: list[tuple[str, dict[str, Any]]],
    run: Run,
    collections: dict[str, tuple[str, dict[str, Any]]],
    result: LoadResult,
) -> None:
    """Keep the Collections that can be staged; each other one is a failure that says why."""
    for label, doc in found:
        cid = doc.get("id")
        bad = _json.non_finite_path(doc)
        if not isinstance(cid, str) or not cid:
            problem = {"field": "id", "reason": "collection has no string id", "hint": "give the collection an id"}
        elif bad is not None:
            problem = {"field": bad, "reason": _json.NON_FINITE, "hint": "STAC is JSON: write null or a finite number"}
        else:
            collections[cid] = (label, doc)
            continue
        run.fail({"source": label, **({"id": cid} if isinstance(cid, str) else {}), **problem})
        result.failed += 1


def stage_collection(
    stage: Stage, manifest: Manifest, cid: str, doc: dict[str, Any], run: Run, result: LoadResult
) -> None:
    rel = f"{COLLECTIONS}/{encode(cid)}.{_canonical.content_hash(doc)[:12]}.json"
    path = _fs.join(stage.root, rel)
    # Content-addressed: an existing file has this content already and may be the one the committed manifest
    # names, so it is never rewritten; a new one is written atomically.
    if not stage.fs.exists(path):
        stage.fs.makedirs(_fs.join(stage.root, COLLECTIONS), exist_ok=True)
        _fs.atomic_write_bytes(stage.fs, path, _json.dumps(doc))
    meta = manifest.collections.setdefault(cid, {"partitioning": None, "json": None})
    meta["json"] = rel
    result.collections_staged += 1


def _reconcile(
    stage: Stage,
    manifest: Manifest,
    new_schemes: dict[str, str],
    new_entries: list[dict[str, Any]],
    run: Run,
    result: LoadResult,
    new_ids_distinct: bool = False,
) -> None:
    """Apply last-wins: drop every row superseded by a later one, then fold the new files into the manifest.

    ``new_ids_distinct``: the writer proved the new rows' ids distinct per collection; then, when none of their
    collections was staged before, nothing can be superseded and the query is skipped."""
    adopt_schemes(manifest, new_schemes)
    staged_rows = sum(e["rows"] for e in new_entries)
    touched = {e["collection"] for e in new_entries}
    old_entries = [f for f in manifest.files if f["collection"] in touched]
    consider = old_entries + new_entries
    if consider and not (new_ids_distinct and not old_entries):
        abs_of = {_fs.full_path(stage.fs, _fs.join(stage.root, e["path"])): e for e in consider}
        new_abs = [_fs.full_path(stage.fs, _fs.join(stage.root, e["path"])) for e in new_entries]
        import duckdb  # only here: a first load never queries, and starts sooner without it

        con = _sql.connect(stage.fs)
        try:
            rows = con.execute(_sql.load("duplicates"), [list(abs_of), new_abs]).fetchall()
        except duckdb.Error as err:
            raise StageError(
                f"{stage.path}: cannot read staged files to apply replacements: {_sql.one_line(err)}"
            ) from None
        finally:
            con.close()
        replaced_old = 0
        dropped_new = 0
        for filename, losers, old_file, n in rows:
            entry = abs_of[filename]
            if old_file:
                replaced_old += n
            else:
                dropped_new += n
            _rewrite_without(stage, entry, losers, run.id, manifest, new_entries)
        result.replaced = replaced_old
        result.duplicates = dropped_new
    result.staged = staged_rows - result.duplicates
    result.new = result.staged - result.replaced
    manifest.files.extend(new_entries)


def adopt_schemes(manifest: Manifest, new_schemes: dict[str, str]) -> None:
    """Record the partitioning chosen for collections new to the stage."""
    for cid, scheme in new_schemes.items():
        manifest.collections.setdefault(cid, {"partitioning": scheme, "json": None})
        if manifest.collections[cid].get("partitioning") is None:
            manifest.collections[cid]["partitioning"] = scheme
    # a collection staged without items (its JSON only) keeps no partitioning: its first items choose one


def _rewrite_without(
    stage: Stage,
    entry: dict[str, Any],
    losers: list[int],
    run_id: str,
    manifest: Manifest,
    new_entries: list[dict[str, Any]],
) -> None:
    """Replace a data file by a copy without the given rows (copy-on-write: the old file stays until commit)."""
    path = _fs.join(stage.root, entry["path"])
    with stage.fs.open(path, "rb") as f:
        table = pq.read_table(f, columns=STAGE_SCHEMA.names)
    keep = np.ones(table.num_rows, dtype=bool)
    keep[losers] = False
    table = table.filter(pa.array(keep))
    in_new = entry in new_entries
    (new_entries if in_new else manifest.files).remove(entry)
    if table.num_rows == 0:
        return
    table = sort_for_stage(stage_columns(table))
    folder = entry["path"].rsplit("/", 1)[0]
    stem = entry["path"].rsplit("/", 1)[1].removesuffix(".parquet")
    rel = f"{folder}/{stem}-r{run_id}.parquet" if not in_new else f"{folder}/{stem}-d.parquet"
    plan = plan_of(manifest, entry["collection"])
    fresh = write_stage_file(stage.fs, stage.root, rel, table, manifest.settings, plan)
    fresh["bucket"] = entry.get("bucket")
    fresh["run"] = run_id
    new_entries.append(fresh)
