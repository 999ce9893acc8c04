"""``stacbatch upgrade``: give the collections of a stage written before property columns (format 2) their
typed columns. Each of their files is written again with the columns its item texts give (the rows, their bytes,
hashes and provenance unchanged), then the manifest switches to the new files in one commit, as every write does:
a crash leaves the stage as it was."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow.parquet as pq

from stacbatch.engine import _fs
from stacbatch.kernel._rows import STAGE_SCHEMA
from stacbatch.stage._files import stage_columns, write_stage_file
from stacbatch.stage._plans import plans_of


@dataclass
class UpgradeResult:
    collections: list[str] = field(default_factory=list)
    files: int = 0
    items: int = 0
    stage_version: int | None = None
    seconds: float = 0.0


@dataclass
class _Job:
    fs: Any
    root: str
    entry: dict[str, Any]
    rel: str
    settings: dict[str, Any]
    #: the collection's declared queryables, if any (the rest is learnt from the file, as for a new collection)
    plan: dict[str, Any] | None


def _rewrite(job: _Job) -> dict[str, Any]:
    with job.fs.open(_fs.join(job.root, job.entry["path"]), "rb") as f:
        table = stage_columns(pq.ParquetFile(f).read(columns=STAGE_SCHEMA.names))
    new = write_stage_file(job.fs, job.root, job.rel, table, job.settings, job.plan)  # rows stay in their order
    for key in ("bucket", "run"):
        if key in job.entry:
            new[key] = job.entry[key]
    return new


def _declared_only(plan: dict[str, Any] | None) -> dict[str, Any] | None:
    return {"declared": plan["declared"]} if plan and plan.get("declared") else None


def has_asset_fields(entry: dict[str, Any]) -> bool:
    """Whether a stage file was written with the asset_fields column (its report says how many items have assets)."""
    return "assets" in (entry.get("columns") or {})


def closed_collections(manifest: Any) -> list[str]:
    """Collections with files and no column plan: written before columns existed."""
    return sorted(
        {f["collection"] for f in manifest.files if "columns" not in manifest.collections.get(f["collection"], {})}
    )


def upgrade(stage_path: str, workers: int | None = None) -> UpgradeResult:
    from stacbatch.engine._pool import default_workers, ordered_map
    from stacbatch.stage._commit import commit
    from stacbatch.stage._runs import Run
    from stacbatch.stage._stage import Stage

    t0 = time.perf_counter()
    res = UpgradeResult()
    stage = Stage.open(stage_path)
    with stage.write_lock():
        stage = Stage.open(stage_path)  # re-read under the lock
        todo = closed_collections(stage.manifest)
        chosen = set(todo)
        # files of the other collections that were written before the asset_fields column: their collection's
        # plan stays, so their property columns come out as they were
        stale = [f for f in stage.manifest.files if f["collection"] not in chosen and not has_asset_fields(f)]
        if not todo and not stale:
            res.seconds = time.perf_counter() - t0
            return res
        run = Run(stage.fs, stage.root, "upgrade", {"collections": todo, "files_without_asset_fields": len(stale)})
        old = [f for f in stage.manifest.files if f["collection"] in chosen] + stale
        plans = plans_of(stage.manifest)  # a legacy collection's plan is closed: only its declarations carry over
        jobs = [
            _Job(
                stage.fs,
                stage.root,
                f,
                f"{f['path'].rsplit('/', 1)[0]}/part-{run.id}-u{n:05d}.parquet",
                stage.manifest.settings,
                _declared_only(plans.get(f["collection"])) if f["collection"] in chosen else plans.get(f["collection"]),
            )
            for n, f in enumerate(old)
        ]
        rows = sum(f["rows"] for f in old)
        n = workers if workers is not None else (default_workers() if rows >= 20_000 else 1)
        new = list(ordered_map(_rewrite, jobs, max(1, min(n, len(jobs)))))
        manifest = stage.manifest.copy()
        gone = {f["path"] for f in old}
        manifest.files = [f for f in manifest.files if f["path"] not in gone] + new
        for cid in todo:
            # an empty plan, not none: the commit's fold then learns it from the new files alone
            manifest.collections.setdefault(cid, {})["columns"] = {"types": {}, "text_only": {}}
        res.collections, res.files, res.items = sorted(chosen | {f["collection"] for f in stale}), len(new), rows
        res.seconds = time.perf_counter() - t0
        counts = {"collections": len(res.collections), "files": len(new), "items": rows}
        res.stage_version = commit(stage, manifest, run, "ok", counts, [], {"seconds": round(res.seconds, 3)})
    return res
