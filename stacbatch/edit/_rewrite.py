"""Copy-on-write of one data file: the selected rows updated (SQL over the file) or removed.

A job runs in a worker process and touches one file: it writes its replacement under a fresh name (never visible
before the manifest names it) and returns the manifest entries and audit rows. Rows whose content did not change
keep their bytes, hash and provenance.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stacbatch.edit._ops import Step
from stacbatch.engine import _finite, _fs, _json, _sql
from stacbatch.engine._layout import partition_dir
from stacbatch.engine._patch import format_path
from stacbatch.engine._progress import current
from stacbatch.kernel import _canonical
from stacbatch.kernel._rows import STAGE_SCHEMA, BatchBuilder, ItemError
from stacbatch.kernel._scan import AVAILABLE as _KERNEL
from stacbatch.kernel._scan import stream_hashes as _stream_hashes
from stacbatch.stage import (
    audit_table,
    bucket_column,
    from_text,
    plans_of,
    sort_for_stage,
    stage_columns,
    write_stage_file,
)

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
    steps: list[Step] = field(default_factory=list)
    auto_updated: bool = True
    rederive: bool = False
    dry_run: bool = False
    overlapping: bool = False
    #: create missing parent objects of a set's (or rename's) target; otherwise the item is skipped for that path
    create_parents: bool = False
    #: the collection's queryable columns plan (``stage/_columns.py``)
    plan: dict[str, Any] | None = None
    #: the items view's property columns the ``set`` expressions name: shown name -> (property, type)
    columns: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: lookup name -> (its Parquet part for this file: rows by ``file_row_number``, the aggregate combining an
    #: item's rows into its value): a column the ``set`` expressions read beside the item
    extra: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass
class FileResult:
    entry: dict[str, Any]
    new_entries: list[dict[str, Any]] = field(default_factory=list)
    audit: pa.Table | None = None
    selected: int = 0
    changed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    #: target path -> selected items left without it because its parent object is missing (no --create-parents)
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def rewritten(self) -> bool:
        return self.changed > 0


def make_jobs(
    stage: Any, manifest: Any, rows: dict[str, list[int]], mode: str, run_id: str, run_time: datetime, **options: Any
) -> list[FileJob]:
    """One job per data file holding selected rows (``rows``: manifest path -> row numbers)."""
    entries = {f["path"]: f for f in manifest.files}
    plans = plans_of(manifest)
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
            plan=plans.get(entries[path]["collection"]),
            **options,
        )
        for n, (path, numbers) in enumerate(sorted(rows.items()))
    ]


#: Below this many rows in the files to rewrite, worker start-up (~1 s) costs more than it saves.
PARALLEL_MIN_ROWS = 20_000


def run_jobs(jobs: list[FileJob], workers: int | None) -> list[FileResult]:
    """Run the jobs, in worker processes when the files they rewrite are large enough to pay for them."""
    from stacbatch.engine._pool import default_workers, ordered_map

    rows = sum(j.entry["rows"] for j in jobs)
    n = workers if workers is not None else (default_workers() if rows >= PARALLEL_MIN_ROWS else 1)
    progress = current()
    progress.phase(f"{jobs[0].mode if jobs else 'edit'}: rewrite files", total=sum(len(j.rows) for j in jobs))
    results = []
    for job, result in zip(jobs, ordered_map(run_job, jobs, max(1, min(n, len(jobs)))), strict=True):
        results.append(result)
        progress.advance(len(job.rows))
    return results


def apply_results(manifest: Any, results: list[FileResult]) -> None:
    """Swap rewritten files for their replacements in a manifest (copy); committed later."""
    rewritten = {r.entry["path"] for r in results if r.rewritten}
    manifest.files = [f for f in manifest.files if f["path"] not in rewritten]
    for r in results:
        manifest.files += r.new_entries


def run_job(job: FileJob) -> FileResult:
    with job.fs.open(_fs.join(job.root, job.entry["path"]), "rb") as f:
        table = stage_columns(pq.ParquetFile(f).read(columns=STAGE_SCHEMA.names))
    # Items are parsed into many short-lived objects: the cyclic GC would rescan them for nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _delete(job, table) if job.mode == "delete" else _update(job, table)
    finally:
        del table
        if enabled:
            gc.enable()
        pa.default_memory_pool().release_unused()  # a worker handles many files: keep its footprint flat


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
        res.samples = gone.select(["collection", "id"]).slice(0, SAMPLE_SIZE).to_pylist()
        return res
    keep = table.filter(pa.array(~mask))
    if keep.num_rows:
        res.new_entries = _write(job, {job.entry.get("bucket"): keep})
    return res


_ABSENT = object()


def _update(job: FileJob, table: pa.Table) -> FileResult:
    """DuckDB computes every value to set (whole batch, from the staged item); the kernel puts them in place in
    the stored texts (``_update_patched``), or Python does while it parses each item (renames, unsets, overlapping
    steps, changes to the query columns, parents to create). Items whose targeted values did not change are left
    alone."""
    sets = [n for n, step in enumerate(job.steps) if step.kind == "set"]
    valued = [n for n, step in enumerate(job.steps) if step.sql is not None]  # sets, and unsets with a predicate
    every = len(job.rows) == table.num_rows
    selected = table if every else table.take(pa.array(job.rows, pa.int64()))
    values: list[list[Any]] = []
    res = FileResult(job.entry, selected=len(job.rows))
    if valued:
        con = _sql.sandbox()  # user expressions: no file, network or extension within reach
        try:
            frame = selected
            if job.extra:  # the rows' positions, to join each lookup's rows to (and keep the order by)
                frame = selected.append_column("_pos", pa.array(np.arange(selected.num_rows), pa.int64()))
            con.register("_selected", frame)
            cols = ", ".join(f"{job.steps[n].sql} AS v{n}" for n in valued)
            source = "_selected"
            if job.columns:  # the view's property columns, as the view reads them where a file has no column
                extra = ", ".join(f"{from_text(n, t)} AS {_sql.ident(shown)}" for shown, (n, t) in job.columns.items())
                source = f"(SELECT *, {extra} FROM _selected)"
            order = ""
            if job.extra:  # each lookup's rows for this file, combined per item and joined by position
                source, order = _looked_up(con, job, source), " ORDER BY _pos"
            out = con.sql(f"SELECT {cols} FROM {source}{order}").to_arrow_table()  # one row per selected row, in order
        finally:
            con.close()
        keep = _finite_values(job, out, sets, selected, res)
        if keep is not None:  # the items given a non-finite value failed: the rest go on, without them
            selected, out = selected.filter(keep), out.filter(keep)
            job = dataclasses.replace(job, rows=np.asarray(job.rows)[keep.to_numpy(zero_copy_only=False)].tolist())
        # a set that leaves every item of this file alone (keep_if_null, all NULL: an extension's field for asset
        # keys this file's items lack) is dropped here, so the steps left fit the kernel's patcher
        idle = {n for n in sets if out.num_rows and out[f"v{n}"].null_count == out.num_rows}
        values = [out[f"v{n}"].to_pylist() for n in valued if n not in idle]
        if idle:
            job = dataclasses.replace(job, steps=[step for n, step in enumerate(job.steps) if n not in idle])
            sets = [n for n, step in enumerate(job.steps) if step.kind == "set"]
            if not job.steps:
                return res
    stamp = job.run_time.isoformat(timespec="microseconds").replace("+00:00", "Z")
    item_col = pa.chunked_array([c.storage for c in selected["item"].chunks], pa.string())
    targets = _targets(job.steps)
    names = [format_path(t) for t in targets]
    # (the kernel leaves an item alone at a step whose value is None, as the Python path does)
    if _KERNEL and not job.rederive and len(sets) == len(job.steps) <= 31 and _disjoint(targets):
        fast = _update_patched(job, table, selected, res, item_col, values, stamp, names)
        if fast is not None:
            return fast
    old_hash = selected["content_hash"].to_pylist()
    ids = selected["id"].to_pylist()
    builder = BatchBuilder() if job.rederive else None
    changed: list[int] = []
    new_texts: list[bytes] = []
    new_hashes: list[str] = []
    text_chunks: list[pa.Array] = []
    paths: list[list[str]] = []
    cache: dict[str, Any] = {}
    for i, text in _texts(item_col, new_texts, text_chunks):
        doc = _json.loads(text)
        if not isinstance(doc, dict):
            continue
        before = [_get(doc, t) for t in targets]
        try:
            _apply(doc, job.steps, [v[i] for v in values], cache, job.overlapping, job.create_parents, res.skipped)
        except _NotAnObject as err:
            res.failures.append(
                _failure(
                    job,
                    ids[i],
                    err.args[0],
                    "is not a JSON object",
                    "set the parent object first, or select items where it is an object",
                )
            )
            continue
        moved = [name for t, name, b in zip(targets, names, before, strict=True) if not _same(b, _get(doc, t))]
        if job.overlapping:  # a later operation may undo an earlier one: only the hash can tell
            if _canonical.content_hash(doc) == old_hash[i]:
                continue
        elif not moved:
            continue
        props = doc.get("properties")
        if job.auto_updated and isinstance(props, dict):
            if props.get("updated") != stamp:
                moved.append("properties.updated")
            props["updated"] = stamp
        if builder is not None:
            try:
                builder.add(doc)
            except ItemError as err:
                res.failures.append(_failure(job, ids[i], err.field, str(err), err.hint))
                continue
        else:
            new_texts.append(_json.dumps(doc))
            new_hashes.append(_canonical.content_hash_text(new_texts[-1]))
        changed.append(i)
        paths.append(list(dict.fromkeys(moved)))
        if len(res.samples) < SAMPLE_SIZE:
            old = _json.loads(text)
            res.samples.append(
                {
                    "collection": job.entry["collection"],
                    "id": ids[i],
                    "changes": {p: [_show(old, p), _show(doc, p)] for p in paths[-1]},
                }
            )
    res.changed = len(changed)
    if not changed:
        return res
    before_rows = selected.take(pa.array(changed, pa.int64()))
    n = len(changed)
    if builder is not None:
        after_rows = (
            pa.Table.from_batches([builder.finish()])
            .append_column("stage_run", pa.repeat(job.run_id, n))
            .append_column("stage_seq", before_rows["stage_seq"])
        )
    else:
        text_chunks.append(pa.array(new_texts, pa.binary()))
        texts = pa.concat_arrays(text_chunks).view(pa.string())
        item = pa.ExtensionArray.from_storage(pa.json_(pa.string()), texts)
        after_rows = before_rows.set_column(7, STAGE_SCHEMA.field("item"), item)
        after_rows = after_rows.set_column(8, STAGE_SCHEMA.field("content_hash"), pa.array(new_hashes, pa.string()))
        after_rows = after_rows.set_column(9, STAGE_SCHEMA.field("stage_run"), pa.repeat(job.run_id, n))
    return _finish_update(job, table, selected, res, changed, after_rows, paths)


def _finish_update(
    job: FileJob,
    table: pa.Table,
    selected: pa.Table,
    res: FileResult,
    changed: list[int],
    after_rows: pa.Table,
    paths: list[list[str]],
) -> FileResult:
    """Audit rows for the changed rows, and the file's replacement (unless a dry run)."""
    before_hash = selected["content_hash"].take(pa.array(changed, pa.int64()))
    after_rows = after_rows.cast(STAGE_SCHEMA)
    res.audit = audit_table(
        job.run_id,
        job.run_time,
        "update",
        after_rows["collection"],
        after_rows["id"],
        pa.array(paths, pa.list_(pa.string())),
        before_hash,
        after_rows["content_hash"],
    )
    if job.dry_run:
        return res
    rows = [job.rows[i] for i in changed]
    if not job.rederive:
        # Keys and times are unchanged, so is the order: the new texts go in place, no sort (one gather at most).
        res.new_entries = _write(job, {job.entry.get("bucket"): _in_place(table, rows, after_rows)}, presorted=True)
        return res
    mask = _mask(table.num_rows, rows)
    merged = pa.concat_tables([table.filter(pa.array(~mask)), after_rows])
    res.new_entries = _write(job, _by_bucket(job, merged))
    return res


def _in_place(table: pa.Table, rows: list[int], after_rows: pa.Table) -> pa.Table:
    """``table`` with its rows at ``rows`` replaced by ``after_rows`` (same keys and times, so same positions)."""
    n = table.num_rows
    if len(rows) == n and rows == list(range(n)):
        return after_rows
    index = np.arange(n)
    index[rows] = n + np.arange(len(rows))
    take = pa.array(index)
    out = table
    for name in ("item", "content_hash", "stage_run"):
        i = out.schema.get_field_index(name)
        column = pa.chunked_array(table[name].chunks + after_rows[name].chunks, table.schema.field(name).type)
        out = out.set_column(i, table.schema.field(name), column.combine_chunks().take(take))
    return out


#: Items turned into Python objects at a time: bounds a worker's heap whatever the file size.
TEXT_CHUNK = 4096
#: Items patched by the kernel per call (bounds its output buffers).
PATCH_ROWS = 8192


def _disjoint(paths: list[tuple[str, ...]]) -> bool:
    """No path equals or contains another: then each step's change is the item's change at that path."""
    return not any(a[: len(b)] == b for i, a in enumerate(paths) for j, b in enumerate(paths) if i != j)


def _update_patched(
    job: FileJob,
    table: pa.Table,
    selected: pa.Table,
    res: FileResult,
    item_col: pa.ChunkedArray,
    values: list[list[Any]],
    stamp: str,
    names: list[str],
) -> FileResult | None:
    """``--set`` steps through the kernel, in the stored texts (no Python object per item). None when an item
    needs the Python path (a parent to create, an error to word): the whole file then takes it."""
    from stacbatch.kernel import _kernel

    paths = tuple(tuple(step.path) for step in job.steps)
    stamp_json = _json.dumps(stamp).decode() if job.auto_updated else None
    statuses, moves, text_parts, hashes = [], [], [], []
    # a slice of rows at a time: the canonical streams (as large as the texts) are hashed and dropped per slice.
    # Slices stay within a chunk (a row group as read): the kernel reads the column's buffers where they are.
    slices = [(chunk, lo) for chunk in item_col.chunks for lo in range(0, len(chunk), PATCH_ROWS)]
    start = 0
    for chunk, lo in slices:
        part = chunk.slice(lo, PATCH_ROWS)
        n = len(part)
        offsets = np.frombuffer(part.buffers()[1], np.int32)[part.offset : part.offset + n + 1]
        status_b, moved_b, toff, texts, coff, canon = _kernel.patch_items(
            offsets.tobytes(), part.buffers()[2] or b"", paths, [v[start : start + n] for v in values], stamp_json
        )
        start += n
        status = np.frombuffer(status_b, np.uint8)
        if (status == 2).any():
            return None
        statuses.append(status)
        moves.append(np.frombuffer(moved_b, np.uint32))
        count = int((status == 1).sum())
        text_parts.append(pa.Array.from_buffers(pa.string(), count, [None, pa.py_buffer(toff), pa.py_buffer(texts)]))
        hashes.append(_stream_hashes(coff, canon))
    status = np.concatenate(statuses) if statuses else np.zeros(0, np.uint8)
    changed = np.flatnonzero(status == 1).tolist()
    res.changed = len(changed)
    if not changed:
        return res
    masks = np.concatenate(moves)[changed].tolist()
    by_mask: dict[int, list[str]] = {}
    for m in set(masks):
        by_mask[m] = [names[k] for k in range(len(names)) if m >> k & 1] + (
            ["properties.updated"] if m >> 31 & 1 else []
        )
    moved = [by_mask[m] for m in masks]
    new_texts = pa.chunked_array(text_parts, pa.string())  # no concatenating copy
    ids = selected["id"]
    for j, i in enumerate(changed[:SAMPLE_SIZE]):
        old, new = _json.loads(item_col[i].as_py()), _json.loads(new_texts[j].as_py())
        res.samples.append(
            {
                "collection": job.entry["collection"],
                "id": ids[i].as_py(),
                "changes": {p: [_show(old, p), _show(new, p)] for p in moved[j]},
            }
        )
    every = len(changed) == selected.num_rows  # then changed is every row, in order
    before_rows = selected if every else selected.take(pa.array(changed, pa.int64()))
    json_type = pa.json_(pa.string())
    item = pa.chunked_array([pa.ExtensionArray.from_storage(json_type, c) for c in new_texts.chunks], json_type)
    after_rows = before_rows.set_column(7, STAGE_SCHEMA.field("item"), item)
    after_rows = after_rows.set_column(8, STAGE_SCHEMA.field("content_hash"), pa.chunked_array(hashes, pa.string()))
    after_rows = after_rows.set_column(9, STAGE_SCHEMA.field("stage_run"), pa.repeat(job.run_id, len(changed)))
    return _finish_update(job, table, selected, res, changed, after_rows, moved)


def _texts(col: pa.ChunkedArray, out: list[bytes], done: list[pa.Array]) -> Iterator[tuple[int, str]]:
    """(row, item text) over a column, a slice at a time; after each slice the texts produced so far (``out``)
    move into an Arrow array in ``done``, so Python holds at most one slice of input and of output."""
    for lo in range(0, len(col), TEXT_CHUNK):
        for j, text in enumerate(col.slice(lo, TEXT_CHUNK).to_pylist()):
            yield lo + j, text
        if out:
            done.append(pa.array(out, pa.binary()))
            out.clear()


def _looked_up(con: Any, job: FileJob, source: str) -> str:
    """``source`` (with ``_pos``, the row's position in the selection) with a column per lookup: its part's rows
    for these items, combined per item (NULL where it has none)."""
    wanted = np.asarray(job.rows, np.int64)
    for k, (name, (part, combine)) in enumerate(sorted(job.extra.items())):
        flat = pq.read_table(part)
        at = flat["file_row_number"].to_numpy().astype(np.int64)
        pos = np.searchsorted(wanted, at)
        ok = (pos < len(wanted)) & (wanted[np.minimum(pos, len(wanted) - 1)] == at)
        flat = flat.filter(pa.array(ok)).append_column("_pos", pa.array(pos[ok], pa.int64()))
        con.register(f"_part{k}", flat)
        value = f"(SELECT _pos, {combine} AS {_sql.ident(name)} FROM _part{k} GROUP BY _pos)"
        source = f"(SELECT * FROM {source} LEFT JOIN {value} USING (_pos))"
    return source


def _failure(job: FileJob, item_id: str, field: str | None, reason: str, hint: str) -> dict[str, Any]:
    return {"source": job.entry["path"], "id": item_id, "field": field, "reason": reason, "hint": hint}


def _finite_values(
    job: FileJob, out: pa.Table, sets: list[int], selected: pa.Table, res: FileResult
) -> pa.Array | None:
    """Fail each item for which a set's value holds NaN, an infinity or a number beyond a double's range (JSON has
    none: the item is left as it was); the mask of the items left, or None when every value is finite."""
    bad: dict[int, str] = {}
    for n in sets:
        for i, path in _finite.non_finite(out[f"v{n}"]):
            bad.setdefault(i, _finite.joined(format_path(job.steps[n].path), path))
    if not bad:
        return None
    ids = selected["id"]
    for i, field_path in sorted(bad.items()):
        hint = "STAC is JSON: make the expression give null or a finite number, e.g. CASE WHEN isfinite(x) THEN x END"
        res.failures.append(_failure(job, ids[i].as_py(), field_path, _finite.REASON, hint))
    keep = np.ones(selected.num_rows, dtype=bool)
    keep[list(bad)] = False
    return pa.array(keep)


class _NotAnObject(Exception):
    pass


def _targets(steps: list[Step]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for kind, path, to, _value in steps:
        out.append(path)
        if kind == "rename" and to is not None:
            out.append(to)
    return out


def _get(doc: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return _ABSENT
        doc = doc[key]
    return doc


def _parent(doc: dict[str, Any], path: tuple[str, ...], create: bool, strict: bool = False) -> dict[str, Any] | None:
    """The object holding the path's last key. A missing (or null) parent is created as an object when ``create``,
    else None. A parent that is not an object: ``_NotAnObject`` when ``create`` or ``strict``, else None."""
    node: Any = doc
    for n, key in enumerate(path[:-1]):
        nxt = node.get(key)
        if nxt is None:
            if not create:
                return None
            nxt = node[key] = {}
        elif not isinstance(nxt, dict):
            if not (create or strict):
                return None
            raise _NotAnObject(format_path(path[: n + 1]))
        node = nxt
    return node  # type: ignore[no-any-return]


def _apply(
    doc: dict[str, Any],
    steps: list[Step],
    values: list[Any],
    cache: dict[str, Any],
    overlapping: bool,
    create_parents: bool = True,
    skipped: dict[str, int] | None = None,
) -> None:
    """The steps on one item, in order. A target whose parent object is missing is skipped (counted in ``skipped``
    by path) unless ``create_parents``: a new parent (an asset without href, say) is rarely what was meant."""
    k = 0
    for kind, path, to, sql_value in steps:
        if sql_value is not None and kind == "unset":  # an unset where a predicate holds
            k += 1
            if not values[k - 1]:
                continue
        if kind == "set":
            text = values[k]
            k += 1
            if text is None:  # a keep_if_null set with nothing to set for this item
                continue
            parent = _parent(doc, path, create=create_parents, strict=True)
            if parent is None:
                _skip(skipped, path)
                continue
            value = _ABSENT if overlapping else cache.get(text, _ABSENT)
            if value is _ABSENT:
                value = _json.loads(text)
                if not isinstance(value, dict | list) and len(cache) < 1024:
                    cache[text] = value  # immutable: safe to share between items
            parent[path[-1]] = value
        elif kind == "unset":
            parent = _parent(doc, path, create=False)
            if parent is not None:
                parent.pop(path[-1], None)
        else:
            parent = _parent(doc, path, create=False)
            if parent is not None and path[-1] in parent:
                assert to is not None, "a rename has a target"
                target = _parent(doc, to, create=create_parents, strict=True)
                if target is None:
                    _skip(skipped, to)
                    continue
                target[to[-1]] = parent.pop(path[-1])


def _skip(skipped: dict[str, int] | None, path: tuple[str, ...]) -> None:
    if skipped is not None:
        name = format_path(path)
        skipped[name] = skipped.get(name, 0) + 1


def _same(a: Any, b: Any) -> bool:
    """Equal as canonical JSON (1 == 1.0, but True != 1)."""
    if a is _ABSENT or b is _ABSENT:
        return a is b
    if type(a) is bool or type(b) is bool:
        return type(a) is type(b) and a == b
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return type(a) is type(b) and _canonical.canonical(a) == _canonical.canonical(b)
    if type(a) is not type(b) and isinstance(a, int | float) and isinstance(b, int | float):
        # 1 == 1.0, but an integer beyond int64 is never equal to a float (the canonical stream: I vs i/d)
        beyond = any(type(x) is int and not -(2**63) <= x < 2**63 for x in (a, b))
        return not beyond and bool(a == b)
    return bool(a == b)


def _show(doc: Any, path_text: str) -> Any:
    from stacbatch.edit._paths import parse_path

    value = _get(doc, parse_path(path_text))
    return "<absent>" if value is _ABSENT else value


def _by_bucket(job: FileJob, table: pa.Table) -> dict[str | None, pa.Table]:
    """Rows grouped by the partition they now belong to (an update of datetime can move a row to another year)."""
    bucket = job.entry.get("bucket")
    if not job.rederive or job.scheme == "none":
        return {bucket: table}
    col = bucket_column(table, table["collection"], {table["collection"][0].as_py(): job.scheme})
    out = {}
    for b in pc.unique(col).to_pylist():
        out[b] = table.filter(pc.equal(col, b))
    return out


def _write(job: FileJob, groups: dict[str | None, pa.Table], presorted: bool = False) -> list[dict[str, Any]]:
    entries = []
    collection = job.entry["collection"]
    for k, (bucket, part) in enumerate(sorted(groups.items(), key=lambda kv: str(kv[0]))):
        folder = partition_dir(collection, job.scheme, bucket)
        rel = f"{folder}/part-{job.run_id}-{job.index:05d}-{k}.parquet"
        rows = part if presorted else sort_for_stage(part)
        entry = write_stage_file(job.fs, job.root, rel, rows, job.settings, job.plan)
        entry["bucket"] = bucket
        entry["run"] = job.run_id
        entries.append(entry)
    return entries


def result_counts(results: list[FileResult]) -> dict[str, int]:
    return {
        "selected": sum(r.selected for r in results),
        "changed": sum(r.changed for r in results),
        "files_rewritten": sum(1 for r in results if r.rewritten),
    }
