"""What a killed or failed write leaves behind, removed by the next writer once it holds the lock: data files no
manifest names (beyond the retired ones, which readers of older versions still use), the spill folder, temporary
manifests, and run folders that never got their summary (written as interrupted, or removed when empty)."""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any

import orjson

from stacbatch.engine import _fs
from stacbatch.engine._layout import (
    AUDIT,
    CATALOGS,
    COLLECTIONS,
    ITEMS,
    MANIFEST,
    RUNS,
    TMP,
    TOMBSTONES,
    now_rfc3339,
)
from stacbatch.stage._manifest import Manifest


def referenced(manifest: Manifest) -> set[str]:
    """What cleanup keeps: this version's files and the ones it retired, which readers of older versions use."""
    return manifest.referenced() | {r["path"] for r in manifest.retired}


def after_crash(fs: Any, root: str, manifest: Manifest | None) -> None:
    """Everything a dead writer left. Runs under the write lock, before the write does anything."""
    delete_unreferenced(fs, root, manifest or Manifest())
    if not _fs.is_local(fs) or not os.path.isdir(root):
        return
    shutil.rmtree(os.path.join(root, TMP), ignore_errors=True)
    for name in os.listdir(root):
        if name.startswith(f"{MANIFEST}.tmp-"):  # a manifest write that died (ENOSPC, a kill) before its rename
            with contextlib.suppress(OSError):
                os.remove(os.path.join(root, name))
    _close_dead_runs(os.path.join(root, RUNS))


def _close_dead_runs(runs: str) -> None:
    """A run folder without ``summary.json`` belongs to a writer that died (the lock says none is alive): an empty
    one goes; one with failures keeps them, under a summary that says the run was interrupted."""
    if not os.path.isdir(runs):
        return
    for entry in os.scandir(runs):
        if not entry.is_dir() or os.path.exists(os.path.join(entry.path, "summary.json")):
            continue
        kept = [n for n in os.listdir(entry.path) if not n.startswith(".")]
        if not kept:
            shutil.rmtree(entry.path, ignore_errors=True)
            continue
        summary = {
            "run_id": entry.name,
            "status": "interrupted",
            "finished": None,
            "noticed": now_rfc3339(),
            "failures_file": f"{RUNS}/{entry.name}/failures.ndjson" if "failures.ndjson" in kept else None,
        }
        _fs.atomic_write_bytes(
            _fs.filesystem(runs)[0],
            os.path.join(entry.path, "summary.json"),
            orjson.dumps(summary, option=orjson.OPT_INDENT_2),
        )


def delete_unreferenced(fs: Any, root: str, manifest: Manifest) -> None:
    refs = referenced(manifest)
    for folder in (ITEMS, COLLECTIONS, CATALOGS, AUDIT, TOMBSTONES):
        base = _fs.join(root, folder)
        if not fs.exists(base):
            continue
        for path in fs.find(base):
            rel = path[len(root.rstrip("/")) + 1 :] if path.startswith(root.rstrip("/")) else path
            if rel not in refs:
                with contextlib.suppress(FileNotFoundError):
                    fs.rm(path)
    if _fs.is_local(fs):
        _prune_empty_dirs(_fs.join(root, ITEMS))


def _prune_empty_dirs(root: str) -> None:
    for dirpath, _dirs, _files in os.walk(root, topdown=False):
        if dirpath != root:
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
