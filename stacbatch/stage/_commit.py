"""The end of every write: audit and tombstones written, the manifest switched (the commit point), old files
removed, the run's summary written."""

from __future__ import annotations

import os
import time
from typing import Any

import pyarrow as pa

from stacbatch.stage._audit import tombstones_from_audit, write_audit, write_tombstones
from stacbatch.stage._cleanup import delete_unreferenced
from stacbatch.stage._manifest import Manifest, write_manifest
from stacbatch.stage._plans import fold
from stacbatch.stage._runs import Run
from stacbatch.stage._stage import Stage


def crash_point(name: str) -> None:
    """Test hook: ``STACBATCH_CRASH_AT=name`` kills the process here, as a power cut would."""
    if os.environ.get("STACBATCH_CRASH_AT") == name:
        os._exit(137)


def commit(
    stage: Stage,
    manifest: Manifest,
    run: Run,
    status: str,
    counts: dict[str, Any],
    audit: list[pa.Table],
    extra: dict[str, Any] | None = None,
    audit_written: dict[str, Any] | None = None,
) -> int:
    """Write the run's audit log and tombstones, then the manifest; returns the new stage version.
    ``audit_written``: the entry of an audit file already written for this run (instead of ``audit``)."""

    entries = [audit_written] if audit_written else write_audit(stage.fs, stage.root, run.id, audit)
    if entries:
        manifest.audit.extend(entries)
        tombs = write_tombstones(stage.fs, stage.root, run.id, [tombstones_from_audit(t) for t in audit])
        manifest.tombstones.extend(tombs)
    fold(stage.manifest, manifest)
    manifest.last_run = {"run_id": run.id, "command": run.command, "status": status, **counts}
    manifest.retire(stage.manifest, time.time())
    manifest.version += 1
    crash_point("before_manifest")
    write_manifest(stage.fs, stage.root, manifest)
    crash_point("after_manifest")
    delete_unreferenced(stage.fs, stage.root, manifest)
    run.finish(status, counts, {**(extra or {}), "stage_version": manifest.version})
    return manifest.version
