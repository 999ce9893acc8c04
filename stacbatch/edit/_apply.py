"""``update`` and ``delete``: select rows, rewrite the files that hold them (in parallel), commit once."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from stacbatch.edit._ops import Op, Step, compile_ops, rederive, sets_updated
from stacbatch.edit._rewrite import FileResult, apply_results, make_jobs, result_counts, run_jobs
from stacbatch.engine._progress import current
from stacbatch.errors import InputError
from stacbatch.stage import Run, Stage, commit, crash_point, read_ids, select_rows, selection


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
) -> EditResult:
    """Apply set/unset/rename operations to the selected items; changed items get ``properties.updated``. A target
    whose parent object an item lacks (``assets.B04.href`` on an item without asset B04) is skipped for that item
    and counted in ``EditResult.skipped``, unless ``create_parents``. An item for which an expression gives NaN or
    an infinity fails (it is left as it was); the others are updated. ``command`` names the run (``extend``
    applies an extension through here)."""
    if not ops:
        raise InputError("nothing to do: give --set, --unset, --rename or --file")
    return _edit(command, stage_path, ops, where, ids_file, dry_run, ignore_unknown_ids, workers, create_parents)


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
) -> EditResult:
    t0 = time.perf_counter()
    ids = read_ids(ids_file) if ids_file else None
    stage = Stage.open(stage_path)
    with stage.write_lock():
        stage = Stage.open(stage_path)  # re-read under the lock
        current().phase(f"{command}: select items", total=None, unit="rows")
        compiled = compile_ops(stage.connection, "items", ops, where)
        predicate, missing = selection(stage, compiled.where, ids, ignore_unknown_ids)
        rows = select_rows(stage, predicate)
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
        crash_point("after_write")
        audit = [r.audit for r in results if r.audit is not None and r.changed]
        res.seconds = time.perf_counter() - t0
        status = "partial" if res.failed else "ok"
        res.stage_version = commit(
            stage, manifest, run, status, res.counts(), _nonempty(audit), {"seconds": round(res.seconds, 3)}
        )
    return res


def named_columns(manifest: Any, steps: list[Step]) -> dict[str, tuple[str, str]]:
    """The items view's property columns that ``set`` expressions may name (their text mentions the name): each
    rewrite job reads them from the item text, which always agrees with the column."""
    texts = [step.sql for step in steps if step.kind == "set" and step.sql]
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
