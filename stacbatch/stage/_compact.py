"""Merge a run's small files per partition into bounded ones, before they are committed.

Input that interleaves collections and times (random order) makes every buffer flush write a small file per
(collection, time bucket). Merging them here keeps file counts proportional to data size, not to flushes.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from stacbatch import _fs
from stacbatch._rows import STAGE_SCHEMA
from stacbatch.stage._layout import partition_dir
from stacbatch.stage._writer import sort_for_stage, write_stage_file


def _groups(
    entries: list[dict[str, Any]], settings: dict[str, Any], flatten: set[str]
) -> list[tuple[str, list[dict[str, Any]]]]:
    """(target folder, files) groups: per partition, runs of small files whose merge stays within the file bounds;
    every file of a collection to flatten goes to its one partition."""
    small_rows = settings["file_max_rows"] // 2
    small_bytes = settings["file_max_bytes"] // 2
    by_dir: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        if e["collection"] in flatten:
            by_dir[partition_dir(e["collection"], "none", None)].append(e)
        elif (e["rows"] < small_rows and e.get("item_bytes", 0) < small_bytes) or e.get("compression") == "none":
            by_dir[e["path"].rsplit("/", 1)[0]].append(e)
    groups: list[tuple[str, list[dict[str, Any]]]] = []
    for folder, files in by_dir.items():
        current: list[dict[str, Any]] = []
        rows = size = 0
        for e in files:
            if current and (
                rows + e["rows"] > settings["file_max_rows"]
                or size + e.get("item_bytes", 0) > settings["file_max_bytes"]
            ):
                groups.append((folder, current))
                current, rows, size = [], 0, 0
            current.append(e)
            rows += e["rows"]
            size += e.get("item_bytes", 0)
        groups.append((folder, current))
    return [
        (folder, g)
        for folder, g in groups
        if len(g) > 1 or g[0]["path"].rsplit("/", 1)[0] != folder or g[0].get("compression") == "none"
    ]


def compact_new_files(
    fs: Any, root: str, run_id: str, entries: list[dict[str, Any]], settings: dict[str, Any], flatten: set[str]
) -> list[dict[str, Any]]:
    """Return the entries after merging; merged-away files are deleted (they were never committed).

    ``flatten``: collections new to the stage that turned out small: all their files go to one partition.
    """
    groups = _groups(entries, settings, flatten)
    if not groups:
        return entries

    def merge(n: int, target: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
        folder, group = target
        tables = []
        for e in group:
            with fs.open(_fs.join(root, e["path"]), "rb") as f:
                tables.append(pq.read_table(f).replace_schema_metadata(None).cast(STAGE_SCHEMA))
        table = sort_for_stage(pa.concat_tables(tables))
        entry = write_stage_file(
            fs, root, f"{folder}/part-{run_id}-m{n:05d}.parquet", table, settings["row_group_rows"]
        )
        entry["bucket"] = None if group[0]["collection"] in flatten else group[0].get("bucket")
        entry["run"] = run_id
        for e in group:
            fs.rm(_fs.join(root, e["path"]))
        return entry

    # pyarrow decodes, sorts and compresses without the GIL: two threads use both cores.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="stacbatch-compact") as pool:
        merged = list(pool.map(merge, range(len(groups)), groups))
    gone = {e["path"] for _, g in groups for e in g}
    return [e for e in entries if e["path"] not in gone] + merged
