"""Copy-on-write of one data file: the selected rows updated (SQL over the file) or removed.

A job runs in a worker process and touches one file: it writes its replacement under a fresh name (never visible
before the manifest names it) and returns the manifest entries and audit rows. Rows whose content did not change
keep their bytes, hash and provenance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stacbatch import _fs, _json, _sql
from stacbatch._rows import STAGE_SCHEMA, BatchBuilder, ItemError
from stacbatch.edit._paths import format_path, get_path, patch_paths
from stacbatch.stage._audit import audit_table
from stacbatch.stage._layout import partition_dir
from stacbatch.stage._writer import _bucket_column, sort_for_stage, write_stage_file

SAMPLE_SIZE = 3


@dataclass
class FileJob:
    fs: Any
    root: str
    entry: dict[str, Any]
    rows: list[int]
    mode: str  # update | delete
    run_id: str
    run_time: datetime
    index: int
    scheme: str
    settings: dict[str, Any]
    steps: list[str] = field(default_factory=list)
    auto_updated: bool = True
    rederive: bool = False
    dry_run: bool = False


@dataclass
class FileResult:
    entry: dict[str, Any]
    new_entries: list[dict[str, Any]] = field(default_factory=list)
    audit: pa.Table | None = None
    selected: int = 0
    changed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rewritten(self) -> bool:
        return self.changed > 0


def make_jobs(
    stage: Any, manifest: Any, rows: dict[str, list[int]], mode: str, run_id: str, run_time: datetime, **options: Any
) -> list[FileJob]:
    """One job per data file holding selected rows (``rows``: manifest path -> row numbers)."""
    entries = {f["path"]: f for f in manifest.files}
    first = options.pop("first_index", 0)
    return [
        FileJob(
            fs=stage.fs,
            root=stage.root,
            entry=entries[path],
            rows=numbers,
            mode=mode,
            run_id=run_id,
            run_time=run_time,
            index=first + n,
            scheme=manifest.collections.get(entries[path]["collection"], {}).get("partitioning") or "none",
            settings=manifest.settings,
            **options,
        )
        for n, (path, numbers) in enumerate(sorted(rows.items()))
    ]


def apply_results(manifest: Any, results: list[FileResult]) -> None:
    """Swap rewritten files for their replacements in a manifest (copy); committed later."""
    rewritten = {r.entry["path"] for r in results if r.rewritten}
    manifest.files = [f for f in manifest.files if f["path"] not in rewritten]
    for r in results:
        manifest.files += r.new_entries


def run_job(job: FileJob) -> FileResult:
    with job.fs.open(_fs.join(job.root, job.entry["path"]), "rb") as f:
        table = pq.read_table(f).replace_schema_metadata(None).cast(STAGE_SCHEMA)
    if job.mode == "delete":
        return _delete(job, table)
    return _update(job, table)


def _mask(n: int, rows: list[int]) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return mask


def _delete(job: FileJob, table: pa.Table) -> FileResult:
    mask = _mask(table.num_rows, job.rows)
    gone = table.filter(pa.array(mask))
    res = FileResult(job.entry, selected=gone.num_rows, changed=gone.num_rows)
    res.audit = audit_table(
        job.run_id, job.run_time, "delete", gone["collection"], gone["id"], None, gone["content_hash"], None
    )
    if job.dry_run:
        res.samples = [{"collection": c, "id": i} for c, i in zip(*_head(gone, ["collection", "id"]), strict=True)]
        return res
    keep = table.filter(pa.array(~mask))
    if keep.num_rows:
        res.new_entries = _write(job, {job.entry.get("bucket"): keep})
    return res


def _head(table: pa.Table, cols: list[str]) -> list[list[Any]]:
    return [table[c].slice(0, SAMPLE_SIZE).to_pylist() for c in cols]


def _update(job: FileJob, table: pa.Table) -> FileResult:
    con = _sql.connect()
    try:
        selected = table.take(pa.array(job.rows, pa.int64())).append_column("_row", pa.array(job.rows, pa.int64()))
        con.register("_selected", selected)
        query = "SELECT * FROM _selected"
        for step in job.steps:
            query = f"SELECT * REPLACE (({step})::JSON AS item) FROM ({query})"
        out = con.sql(f"SELECT _row, item::VARCHAR AS new FROM ({query}) ORDER BY _row").to_arrow_table()
    finally:
        con.close()
    rows = out["_row"].to_numpy()
    new_texts = out["new"].to_pylist()
    old_hash = table["content_hash"].take(rows).to_pylist()
    res = FileResult(job.entry, selected=len(rows))
    changed_rows: list[int] = []
    texts: list[bytes] = []
    hashes: list[str] = []
    builder = BatchBuilder() if job.rederive else None
    stamp = job.run_time.isoformat(timespec="microseconds").replace("+00:00", "Z")
    for row, text, before in zip(rows.tolist(), new_texts, old_hash, strict=True):
        doc = _json.loads(text)
        if _json.content_hash(doc) == before:
            continue
        props = doc.get("properties") if isinstance(doc, dict) else None
        if job.auto_updated and isinstance(props, dict):
            props["updated"] = stamp
        if builder is not None:
            try:
                builder.add(doc)
            except ItemError as err:
                res.failures.append(
                    {
                        "source": job.entry["path"],
                        "id": table["id"][row].as_py(),
                        "field": err.field,
                        "reason": str(err),
                        "hint": err.hint,
                    }
                )
                continue
        else:
            texts.append(_json.dumps(doc))
            hashes.append(_json.content_hash(doc))
        changed_rows.append(row)
    res.changed = len(changed_rows)
    if not changed_rows:
        return res
    idx = pa.array(changed_rows, pa.int64())
    before = table.take(idx)
    if builder is not None:
        parsed = builder.finish()
        after = (
            pa.Table.from_batches([parsed])
            .append_column("stage_run", pa.repeat(job.run_id, len(changed_rows)))
            .append_column("stage_seq", before["stage_seq"])
        )
    else:
        item = pa.ExtensionArray.from_storage(pa.json_(pa.string()), pa.array(texts, pa.binary()).view(pa.string()))
        after = before.set_column(7, STAGE_SCHEMA.field("item"), item)
        after = after.set_column(8, STAGE_SCHEMA.field("content_hash"), pa.array(hashes, pa.string()))
        after = after.set_column(9, STAGE_SCHEMA.field("stage_run"), pa.repeat(job.run_id, len(changed_rows)))
    after = after.cast(STAGE_SCHEMA)
    paths, samples = _changes(before, after)
    res.samples = samples
    res.audit = audit_table(
        job.run_id,
        job.run_time,
        "update",
        after["collection"],
        after["id"],
        paths,
        before["content_hash"],
        after["content_hash"],
    )
    if job.dry_run:
        return res
    mask = _mask(table.num_rows, changed_rows)
    merged = pa.concat_tables([table.filter(pa.array(~mask)), after])
    res.new_entries = _write(job, _by_bucket(job, merged))
    return res


def _changes(before: pa.Table, after: pa.Table) -> tuple[pa.Array, list[dict[str, Any]]]:
    """Per changed row, the paths that changed (leaves of the JSON merge patch), and a few before/after samples."""
    con = _sql.connect()
    try:
        con.register(
            "_pairs", pa.table({"old": before["item"].cast(pa.string()), "new": after["item"].cast(pa.string())})
        )
        patches = con.sql("SELECT json_merge_patch_diff(old::JSON, new::JSON)::VARCHAR FROM _pairs").fetchall()
    finally:
        con.close()
    paths: list[list[str]] = []
    samples: list[dict[str, Any]] = []
    for n, (patch,) in enumerate(patches):
        segs = patch_paths(_json.loads(patch))
        paths.append([format_path(s) for s in segs])
        if n < SAMPLE_SIZE:
            old = _json.loads(before["item"][n].as_py())
            new = _json.loads(after["item"][n].as_py())
            samples.append(
                {
                    "collection": after["collection"][n].as_py(),
                    "id": after["id"][n].as_py(),
                    "changes": {format_path(s): [get_path(old, s), get_path(new, s)] for s in segs},
                }
            )
    return pa.array(paths, pa.list_(pa.string())), samples


def _by_bucket(job: FileJob, table: pa.Table) -> dict[str | None, pa.Table]:
    """Rows grouped by the partition they now belong to (an update of datetime can move a row to another year)."""
    bucket = job.entry.get("bucket")
    if not job.rederive or job.scheme == "none":
        return {bucket: table}
    col = _bucket_column(table, table["collection"], {table["collection"][0].as_py(): job.scheme})
    out = {}
    for b in pc.unique(col).to_pylist():
        out[b] = table.filter(pc.equal(col, b))
    return out


def _write(job: FileJob, groups: dict[str | None, pa.Table]) -> list[dict[str, Any]]:
    entries = []
    collection = job.entry["collection"]
    for k, (bucket, part) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        folder = partition_dir(collection, job.scheme, bucket)
        rel = f"{folder}/part-{job.run_id}-{job.index:05d}-{k}.parquet"
        entry = write_stage_file(job.fs, job.root, rel, sort_for_stage(part), job.settings["row_group_rows"])
        entry["bucket"] = bucket
        entry["run"] = job.run_id
        entries.append(entry)
    return entries
