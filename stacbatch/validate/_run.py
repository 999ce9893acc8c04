"""``validate``: the items of a stage (or of files, folders, catalogs and STAC APIs, staged in a temporary stage
first) checked in worker processes, file by file; its collections and catalogs in this process; the verdicts
recorded in the stage as the ``validation`` view, with a failures file and a summary."""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stacbatch.engine import _fs
from stacbatch.engine._layout import MANIFEST, RUNS, new_run_id
from stacbatch.engine._pool import default_workers, ordered_map
from stacbatch.engine._progress import current
from stacbatch.errors import InputError
from stacbatch.stage import (
    Run,
    Stage,
    catalog_doc,
    commit,
    read_ids,
    select_rows,
    selection,
)
from stacbatch.stage import load as load_to_stage
from stacbatch.stage._verdicts import VERDICT_SCHEMA
from stacbatch.validate._check import FileJob, Options, check_file, checker, verdict_rows
from stacbatch.validate._schemas import SchemaSource

#: below this many items, worker processes cost more than they save
PARALLEL_MIN_ITEMS = 5_000


@dataclass
class ValidationResult:
    """What a validation found: counts, and every verdict as an Arrow table (``VERDICT_SCHEMA``)."""

    run_id: str
    verdicts: pa.Table
    #: per collection (None: catalogs and objects without one): {"checked", "valid", "invalid"}
    per_collection: dict[str | None, dict[str, int]] = field(default_factory=dict)
    #: invalid objects per rule (a schema URL or a check's name)
    by_rule: dict[str, int] = field(default_factory=dict)
    checked: int = 0
    valid: int = 0
    invalid: int = 0
    seconds: float = 0.0
    failures_file: str | None = None
    stage_version: int | None = None

    def to_polars(self) -> Any:
        import polars as pl

        return pl.from_arrow(self.verdicts)


def is_stage(path: str) -> bool:
    fs, root = _fs.filesystem(path)
    return bool(fs.exists(_fs.join(root, MANIFEST)))


def validate(
    target: str | list[str],
    *,
    options: Options | None = None,
    collections: list[str] | None = None,
    where: str | None = None,
    ids_file: str | None = None,
    workers: int | None = None,
    failures: str | None = None,
    api: Any = None,
) -> ValidationResult:
    """Validate a stage (its items, collections and catalogs), or files, folders, static catalogs,
    stac-geoparquet and STAC API URLs (read into a temporary stage first: nothing is staged anywhere).

    A stage records the run's verdicts (its ``validation`` view) and its failures file (``runs/<run>/``);
    ``failures``: also write one line per invalid object there. ``collections``/``where``/``ids_file`` select
    items of a stage as ``update`` does."""
    options = options or Options(source=SchemaSource.from_env())
    targets = [target] if isinstance(target, str) else list(target)
    if len(targets) == 1 and is_stage(targets[0]):
        return _validate_stage(
            targets[0], options, collections, where, ids_file, workers, failures, record=True, label=None
        )
    if where or ids_file:
        raise InputError("--where and --ids select items of a stage; give --stage, or validate the files whole")
    with tempfile.TemporaryDirectory(prefix="stacbatch-validate-") as tmp:
        stage = os.path.join(tmp, "stage")
        loaded = load_to_stage(stage, targets, api=api)
        extra = _load_failures(stage, loaded)
        label = targets[0] if len(targets) == 1 else None
        return _validate_stage(
            stage, options, collections, None, None, workers, failures, record=False, label=label, extra=extra
        )


def _load_failures(stage: str, loaded: Any) -> list[dict[str, Any]]:
    """What the temporary load could not stage (not JSON, not an object, no id...): each is an invalid object."""
    if not loaded.failed or not loaded.failures_file:
        return []
    fs, path = _fs.filesystem(loaded.failures_file)  # the load names it in full
    if not fs.exists(path):
        return []
    with fs.open(path, "rb") as f:
        return [orjson.loads(line) for line in f.read().splitlines() if line.strip()]


def _validate_stage(
    path: str,
    options: Options,
    collections: list[str] | None,
    where: str | None,
    ids_file: str | None,
    workers: int | None,
    failures: str | None,
    *,
    record: bool,
    label: str | None,
    extra: list[dict[str, Any]] | None = None,
) -> ValidationResult:
    t0 = time.perf_counter()
    stage = Stage.open(path)
    run_id = new_run_id()
    chosen = sorted(stage.manifest.collections) if collections is None else list(collections)
    unknown = [c for c in chosen if c not in stage.manifest.collections]
    if unknown:
        raise InputError(f"-c {unknown[0]}: no such collection in {path}")
    jobs = _jobs(stage, chosen, where, ids_file, options, run_id, label)
    total = sum(j.count for j in jobs)
    n = workers if workers is not None else (default_workers() if total >= PARALLEL_MIN_ITEMS else 1)
    progress = current()
    progress.phase("validate items", total=total)
    tables: list[pa.Table] = []
    for job, table in zip(jobs, ordered_map(check_file, jobs, max(1, min(n, len(jobs) or 1))), strict=True):
        tables.append(table)
        progress.advance(job.count)
    tables.append(_check_documents(stage, chosen, collections is None, options, run_id, label or path))
    if extra:
        tables.append(_unreadable(extra, run_id, label or ""))
    # one dictionary per column for the whole run (each job's table brought its own): grouping needs it
    verdicts = pa.concat_tables(tables).unify_dictionaries() if tables else VERDICT_SCHEMA.empty_table()
    res = _summarise(run_id, verdicts)
    if failures:
        _write_failures(failures, verdicts)
        res.failures_file = failures
    if record:
        res.stage_version, in_stage = _record(stage, path, run_id, verdicts, res, options, failures)
        if in_stage and not failures:  # the user's own file is the one to name; the stage keeps its copy too
            res.failures_file = _full(stage, in_stage)
    res.seconds = time.perf_counter() - t0
    return res


def _full(stage: Stage, rel: str) -> str:
    return _fs.full_path(stage.fs, _fs.join(stage.root, rel))


def _jobs(
    stage: Stage,
    chosen: list[str],
    where: str | None,
    ids_file: str | None,
    options: Options,
    run_id: str,
    label: str | None,
) -> list[FileJob]:
    wanted = set(chosen)
    if where or ids_file:
        ids = read_ids(ids_file) if ids_file else None
        predicate, _missing = selection(stage, where, ids, allow_unknown=True)
        rows = select_rows(stage, predicate)
        entries = {f["path"]: f for f in stage.manifest.files}
        picked: list[tuple[str, tuple[int, ...] | None, int]] = [
            (p, tuple(r), len(r)) for p, r in sorted(rows.items()) if entries[p]["collection"] in wanted
        ]
    else:
        picked = [(f["path"], None, int(f["rows"])) for f in stage.manifest.files if f["collection"] in wanted]
    return [
        FileJob(stage.fs, _full(stage, rel), label or rel, rows, options, run_id, count) for rel, rows, count in picked
    ]


def _check_documents(
    stage: Stage, chosen: list[str], catalogs: bool, options: Options, run_id: str, label: str
) -> pa.Table:
    """The stage's Collections (those with JSON) and, when no collection was chosen, its Catalogs."""
    objs: list[Any] = []
    colls: list[str | None] = []
    ids: list[str | None] = []
    for cid in chosen:
        doc = stage.collection_json(cid)
        if doc is not None:
            objs.append(doc)
            colls.append(cid)
            ids.append(cid)
    if catalogs:
        for key, meta in sorted(stage.manifest.catalogs.items()):
            if meta.get("type") == "Catalog":
                doc = catalog_doc(stage, key)
                if doc is not None:
                    objs.append(doc)
                    colls.append(None)
                    ids.append(str(doc.get("id")) if isinstance(doc, dict) else key)
    findings = checker(options).objects(objs, colls)
    return verdict_rows(run_id, objs, colls, ids, findings, [label] * len(objs))


def _unreadable(records: list[dict[str, Any]], run_id: str, label: str) -> pa.Table:
    rows: dict[str, list[Any]] = {f.name: [] for f in VERDICT_SCHEMA}
    for rec in records:
        where = rec.get("source") or label
        if "line" in rec:
            where = f"{where}:{rec['line']}"
        rows["run_id"].append(run_id)
        rows["kind"].append("unknown")
        rows["collection"].append(rec.get("collection"))
        rows["id"].append(rec.get("id"))
        rows["valid"].append(False)
        rows["rule"].append("readable")
        rows["path"].append(rec.get("field") or "")
        rows["message"].append(str(rec.get("reason") or "could not be read"))
        rows["source"].append(where)
    return pa.table(rows, schema=VERDICT_SCHEMA)


def _text(col: Any) -> Any:
    """A (dictionary-encoded) verdict column as plain strings, for the compute functions that take no
    dictionaries (after grouping: a short column)."""
    return col.cast(pa.string())


def _summarise(run_id: str, verdicts: pa.Table) -> ValidationResult:
    """Counts per collection and per rule, grouped by Arrow. A valid object has one row and an invalid one a row
    per finding, so valid objects are counted by their rows (no grouping by id over the whole run) and only the
    invalid rows are grouped into objects (kind, collection, id, source)."""
    res = ValidationResult(run_id, verdicts)
    obj = ["kind", "collection", "id", "source"]
    valid = verdicts.select(["kind", "collection", "valid"]).filter(verdicts["valid"])
    valid_per = valid.group_by(["kind", "collection"]).aggregate([("valid", "count")])
    bad_rows = verdicts.filter(pc.invert(verdicts["valid"]))
    bad_objects = bad_rows.group_by(obj).aggregate([])
    bad_per = bad_objects.group_by(["kind", "collection"]).aggregate([([], "count_all")])
    counts: dict[str | None, list[int]] = {}
    for table, at, n in ((valid_per, 0, "valid_count"), (bad_per, 1, "count_all")):
        kinds, colls, ns = _text(table["kind"]).to_pylist(), _text(table["collection"]).to_pylist(), table[n]
        for kind, coll, k in zip(kinds, colls, ns.to_pylist(), strict=True):
            place = None if kind == "catalog" else coll  # catalogs are counted apart from any collection
            counts.setdefault(place, [0, 0])[at] += k
    for coll, (good, bad) in counts.items():
        res.per_collection[coll] = {"checked": good + bad, "valid": good, "invalid": bad}
    res.valid = sum(good for good, _ in counts.values())
    res.invalid = bad_objects.num_rows
    res.checked = res.valid + res.invalid
    failed = bad_rows.filter(pc.is_valid(bad_rows["rule"])).group_by([*obj, "rule"]).aggregate([])
    per_rule = failed.group_by("rule").aggregate([("rule", "count")])
    per_rule = pa.table({"rule": _text(per_rule["rule"]), "n": per_rule["rule_count"]}).sort_by(
        [("n", "descending"), ("rule", "ascending")]
    )
    res.by_rule = dict(zip(per_rule["rule"].to_pylist(), per_rule["n"].to_pylist(), strict=True))
    return res


HINTS: dict[str, str] = {
    "datetime": "write RFC 3339 date-times, e.g. 2021-06-01T10:00:00Z",
    "time-order": "start_datetime must not be after end_datetime",
    "bbox": "bbox is west, south, east, north and must contain the geometry",
    "geometry": "fix the geometry (shapely's make_valid, or the source's own)",
    "asset-href": "give every asset an href",
    "extension-declared": "list each extension whose fields are used in stac_extensions, and only those",
    "alternate-href": "give each alternate an href (alternate-assets)",
    "unknown-type": "type is Feature (Item), Collection or Catalog",
    "not-an-object": "a STAC object is a JSON object",
    "stac-version": "give stac_version, e.g. 1.1.0",
    "readable": "fix the JSON so the object can be read",
}


def hint(rule: str, message: str) -> str:
    if message.startswith("schema not available"):
        return "put the schema in a --schemas folder (INDEX.json: URL -> file) or run `stacbatch schemas fetch URL`"
    return HINTS.get(rule, f"see the schema: {rule}")


def failure_records(verdicts: pa.Table) -> list[dict[str, Any]]:
    """One record per invalid object: its first finding, how many more, and a hint."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    bad = verdicts.filter(pc.invert(verdicts["valid"]))
    for row in bad.to_pylist():
        k = (row["kind"], row["collection"], row["id"], row["source"])
        rec = out.get(k)
        if rec is None:
            out[k] = {
                "kind": row["kind"],
                "collection": row["collection"],
                "id": row["id"],
                "source": row["source"],
                "rule": row["rule"],
                "path": row["path"],
                "message": row["message"],
                "hint": hint(row["rule"], row["message"]),
                "more": 0,
            }
        else:
            rec["more"] += 1
    return list(out.values())


def _write_failures(path: str, verdicts: pa.Table) -> None:
    fs, p = _fs.filesystem(path)
    data = b"".join(orjson.dumps(r) + b"\n" for r in failure_records(verdicts))
    _fs.atomic_write_bytes(fs, p, data)


def _record(
    stage: Stage,
    path: str,
    run_id: str,
    verdicts: pa.Table,
    res: ValidationResult,
    options: Options,
    failures: str | None,
) -> tuple[int, str | None]:
    """The verdicts into the stage: a new file, then the manifest switched to name it (atomic, under the lock)."""
    with stage.write_lock():
        stage = Stage.open(path)
        run = Run(stage.fs, stage.root, "validate", {"checks": list(options.checks), "failures": failures}, run_id)
        for rec in failure_records(verdicts):
            run.fail(rec)
        rel = f"{RUNS}/{run_id}/validation.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(verdicts, sink, compression="zstd")
        _fs.atomic_write_bytes(stage.fs, _fs.join(stage.root, rel), sink.getvalue().to_pybytes())
        manifest = stage.manifest.copy()
        manifest.validation = {"path": rel, "run_id": run_id, "rows": verdicts.num_rows}
        counts = {"checked": res.checked, "valid": res.valid, "invalid": res.invalid}
        version = commit(stage, manifest, run, "ok" if not res.invalid else "partial", counts, [])
    return version, (f"{RUNS}/{run_id}/failures.ndjson" if res.invalid else None)
