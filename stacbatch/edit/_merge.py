"""``merge --stage TARGET SOURCE``: bring a target stage in line with another stage, a change set, or anything
``load`` reads. Modes: ``upsert`` (add new, replace changed), ``insert-only`` (add new only), ``mirror`` (upsert,
then delete what the source does not have; for a change set: apply its deletions).

One commit: deletions rewrite the files that hold them, new versions go through the same partition writer and
last-wins reconcile as ``load``, the audit log gets insert/replace/delete rows with changed paths.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stacbatch.edit._diff import CHANGESET_FORMAT, as_stage, change_batches, compare_keys, source_sql
from stacbatch.edit._rewrite import apply_results, make_jobs, run_jobs
from stacbatch.engine import _fs, _sql
from stacbatch.engine._progress import current
from stacbatch.errors import InputError, QueryError
from stacbatch.kernel._rows import STAGE_SCHEMA
from stacbatch.stage import (
    LoadResult,
    PartitionWriter,
    Run,
    Stage,
    adopt_schemes,
    audit_table,
    commit,
    crash_point,
    plans_of,
    select_rows,
    stage_collection,
    stage_tmp,
)

MODES = ("upsert", "insert-only", "mirror")


@dataclass
class MergeResult:
    run_id: str
    mode: str
    inserted: int = 0
    replaced: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped: int = 0  # changed in the source but kept (insert-only), or deletions not applied (not mirror)
    collections_staged: int = 0
    per_collection: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    stage_version: int = 0

    def counts(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("inserted", "replaced", "deleted", "unchanged", "skipped")}


def is_changeset(path: str) -> bool:
    if not path.endswith(".parquet"):
        return False
    fs, p = _fs.filesystem(path)
    try:
        with fs.open(p, "rb") as f:
            meta = pq.read_schema(f).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return False
    return meta.get(b"stacbatch") == CHANGESET_FORMAT


@contextlib.contextmanager
def _source(con: duckdb.DuckDBPyConnection, source: str, api: Any = None) -> Iterator[tuple[Stage | None, bool]]:
    """Create view ``_b`` (the source's items) and table ``_cs_deleted`` (keys a change set deletes)."""
    if is_changeset(source):
        fs, _ = _fs.filesystem(source)
        lit = _sql.literal(_fs.full_path(fs, _fs.filesystem(source)[1]))
        con.execute(
            f"CREATE OR REPLACE VIEW _b AS SELECT collection, id, datetime, start_datetime, end_datetime, bbox, "
            f"geometry, item, hash_after AS content_hash, NULL::INTEGER AS __file, NULL::BIGINT AS __row "
            f"FROM read_parquet({lit}) WHERE kind IN ('added', 'modified')"
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _cs_deleted AS SELECT collection, id FROM read_parquet({lit}) "
            "WHERE kind = 'deleted'"
        )
        yield None, True
        return
    with as_stage(source, api) as stage:
        source_sql(con, stage, "_b")
        yield stage, False


def merge(
    target: str, source: str, *, mode: str = "upsert", workers: int | None = None, api: Any = None
) -> MergeResult:
    """Apply ``source`` (a stage, a change set, or anything ``load`` reads; ``api``: ``ApiOptions`` for a STAC API
    URL) to the stage at ``target``."""
    if mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    t0 = time.perf_counter()
    stage = Stage.open_or_new(target)
    with stage.write_lock():
        stage = Stage.open_or_new(target)
        run = Run(stage.fs, stage.root, "merge", {"source": source, "mode": mode})
        res = MergeResult(run.id, mode)
        run_time = datetime.now(UTC)
        con = _sql.connect(stage.fs)
        con.execute("SET enable_geoparquet_conversion = false")
        try:
            source_sql(con, stage, "_a")
            with _source(con, source, api) as (src_stage, changeset):
                progress = current()
                progress.phase("merge: compare keys and hashes", total=None, unit="rows")
                counts = compare_keys(con)
                manifest = stage.manifest.copy()
                audit: list[pa.Table] = []
                deletes = _deletes(con, mode, changeset)
                # One rewrite per file: deleted rows and the old versions of replaced rows go together.
                replaced = (
                    con.sql("SELECT collection, id FROM _k WHERE kind = 'modified'").to_arrow_table()
                    if mode != "insert-only"
                    else deletes.slice(0, 0)
                )
                res.deleted = _apply_deletes(stage, manifest, deletes, replaced, run.id, run_time, workers, audit)
                # rows read by their place in the files: the target's old files stay until the commit
                _upserts(con, stage, manifest, run, run_time, mode, res, audit, src_stage)
                if src_stage is not None:
                    for cid in sorted(src_stage.manifest.collections):
                        doc = src_stage.collection_json(cid)
                        if doc is not None and (mode != "insert-only" or cid not in manifest.collections):
                            stage_collection(stage, manifest, cid, doc, run, LoadResult(run.id))
                            res.collections_staged += 1
        except duckdb.Error as err:
            raise QueryError(f"merge failed reading {source}: {_sql.one_line(err)}") from None
        finally:
            con.close()
        for c, kinds in counts.items():
            if changeset:  # the change set lists changes only: keys it does not name are not deletions
                kinds["deleted"] = 0
            res.unchanged += kinds["unchanged"]
            res.per_collection[c] = dict(kinds)
        total_changed = sum(k["modified"] for k in counts.values())
        total_deleted_src = sum(k["deleted"] for k in counts.values()) if not changeset else 0
        res.skipped = (total_changed - res.replaced) + (total_deleted_src - res.deleted if mode != "mirror" else 0)
        crash_point("after_write")
        res.seconds = time.perf_counter() - t0
        res.stage_version = commit(stage, manifest, run, "ok", res.counts(), audit, {"seconds": round(res.seconds, 3)})
    return res


def _deletes(con: duckdb.DuckDBPyConnection, mode: str, changeset: bool) -> pa.Table:
    if mode != "mirror":
        return pa.table({"collection": pa.array([], pa.string()), "id": pa.array([], pa.string())})
    if changeset:
        q = "SELECT d.collection, d.id FROM _cs_deleted d SEMI JOIN _a ON _a.collection = d.collection AND _a.id = d.id"
    else:
        q = "SELECT collection, id FROM _k WHERE kind = 'deleted'"
    return con.sql(q).to_arrow_table()


def _apply_deletes(
    stage: Stage,
    manifest: Any,
    deletes: pa.Table,
    replaced: pa.Table,
    run_id: str,
    run_time: datetime,
    workers: int | None,
    audit: list[pa.Table],
) -> int:
    """Remove the deleted rows and the old versions of replaced rows; only deletions are logged as such."""
    keys = pa.concat_tables([deletes.cast(replaced.schema), replaced]) if deletes.num_rows else replaced
    if not keys.num_rows:
        return 0
    stage.connection.register("_del", keys)
    rows = select_rows(stage, "(collection, id) IN (SELECT collection, id FROM _del)")
    # first_index: file names distinct from the partition writer's
    jobs = make_jobs(stage, manifest, rows, "delete", run_id, run_time, first_index=90_000)
    results = run_jobs(jobs, workers)
    apply_results(manifest, results)
    gone = pc.binary_join_element_wise(deletes["collection"], deletes["id"], "\x00")
    deleted = 0
    for r in results:
        if r.audit is not None and r.audit.num_rows:
            key = pc.binary_join_element_wise(r.audit["collection"], r.audit["id"], "\x00")
            logged = r.audit.filter(pc.is_in(key, value_set=gone))
            audit.append(logged)
            deleted += logged.num_rows
    return deleted


def _upserts(
    con: duckdb.DuckDBPyConnection,
    stage: Stage,
    manifest: Any,
    run: Run,
    run_time: datetime,
    mode: str,
    res: MergeResult,
    audit: list[pa.Table],
    source: Stage | None,
) -> None:
    kinds = ["added"] if mode == "insert-only" else ["added", "modified"]
    con.execute(f"DELETE FROM _k WHERE kind NOT IN ({', '.join(_sql.literal(k) for k in kinds)})")
    partitioning = {c: m["partitioning"] for c, m in manifest.collections.items() if m.get("partitioning")}
    seq = 0
    with stage_tmp(stage, run.id) as spill:
        writer = PartitionWriter(
            stage.fs, stage.root, run.id, manifest.settings, partitioning, spill, plans=plans_of(manifest)
        )
        ((total,),) = con.sql("SELECT count(*) FROM _k").fetchall()
        progress = current()
        progress.phase("merge: stage new and changed items", total=int(total))
        for table in change_batches(con, [], stages=(stage, source) if source is not None else None):
            n = table.num_rows
            progress.advance(n)
            if not n:
                continue
            rows = pa.Table.from_arrays(
                [
                    table["collection"],
                    table["id"],
                    table["datetime"],
                    table["start_datetime"],
                    table["end_datetime"],
                    table["bbox"],
                    table["geometry"],
                    table["item"],
                    table["hash_after"],
                    pa.repeat(run.id, n),
                    pa.arange(seq, seq + n),
                ],
                schema=STAGE_SCHEMA,
            )
            seq += n
            for batch in rows.to_batches():
                writer.add(batch)
            added = pc.equal(table["kind"], "added")
            res.inserted += pc.sum(added.cast(pa.int64())).as_py() or 0
            op = pc.if_else(added, "insert", "replace")
            audit.append(
                audit_table(
                    run.id,
                    run_time,
                    op,
                    table["collection"],
                    table["id"],
                    table["paths"],
                    table["hash_before"],
                    table["hash_after"],
                )
            )
            res.replaced += n - (pc.sum(added.cast(pa.int64())).as_py() or 0)
        new_entries = writer.finish()
    # The old versions of replaced rows are gone already (see _apply_deletes): no last-wins pass needed.
    adopt_schemes(manifest, writer.new_schemes)
    manifest.files.extend(new_entries)


__all__ = ["MODES", "MergeResult", "merge"]
