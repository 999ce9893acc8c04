"""The rows of a change set read by their place in the stages' files, not by joining whole item columns.

``compare_keys`` leaves every differing key with its file and row number in A and in B. Here the item texts of
just those rows are read (``stage._pages.take_rows``: only the pages that hold them are decompressed), B's query
columns come from DuckDB at those places, and ``json_merge_patch_diff`` runs over the modified pairs alone. The SQL
join this replaces (``diff_changes.sql``) materialises both stages' item columns: ~3.5 s per 1M items however few
rows changed.

The result is one in-memory table, so it is used only when the texts fit ``TEXT_BUDGET``; beyond that the caller
streams through the SQL join (by then most pages hold a changed row anyway).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stacbatch.engine import _sql
from stacbatch.engine._pool import default_workers
from stacbatch.stage import Stage, take_rows

log = logging.getLogger(__name__)

#: Item text held in memory at once for a located change set (estimated from file sizes, see ``_estimate``).
TEXT_BUDGET = 1 << 30
#: Item JSON compresses ~6x (LZ4) to ~11x (zstd) and is most of a file: whole-file bytes per row times this is
#: a generous estimate of the text per row.
_RATIO = 14


@dataclass
class _Job:
    side: str  # "a" or "b"
    file: int  # index into the side's file list
    path: str
    rows: np.ndarray  # sorted file rows
    at: np.ndarray  # where each row goes in the key table


def _jobs(keys: pa.Table, side: str, paths: list[str], want: pa.Array) -> list[_Job]:
    at = np.flatnonzero(want.to_numpy(zero_copy_only=False))
    if not len(at):
        return []
    sel = keys.take(pa.array(at))
    files = sel[f"{side}_file"].to_numpy(zero_copy_only=False)
    rows = sel[f"{side}_row"].to_numpy(zero_copy_only=False)
    order = np.lexsort((rows, files))
    files, rows, at = files[order], rows[order], at[order]
    cuts = np.flatnonzero(np.diff(files)) + 1
    return [
        _Job(side, int(files[p[0]]), paths[int(files[p[0]])], rows[p[0] : p[-1] + 1], at[p[0] : p[-1] + 1])
        for p in np.split(np.arange(len(files)), cuts)
    ]


def _estimate(jobs: list[_Job], stage: Stage) -> float:
    """Bytes of item text the jobs would hold: each file's bytes per row, times rows wanted, times _RATIO."""
    sizes = {p: (f["bytes"], max(1, f["rows"])) for p, f in zip(stage.file_paths(), stage.manifest.files, strict=True)}
    total = 0.0
    for j in jobs:
        size, rows = sizes.get(j.path, (0, 1))
        total += size / rows * len(j.rows) * _RATIO
    return total


def _places_hold(con: duckdb.DuckDBPyConnection, paths: list[str]) -> bool:
    """Whether DuckDB's file_index numbers ``paths`` in list order (what the places in ``_k`` assume)."""
    if not paths:
        return True
    found = con.sql(_sql.load("file_places").replace("{files}", _sql.literal_list(paths))).fetchall()
    return len(found) == len(paths) and all(paths[i] == name for i, name in found)


def _scatter(n: int, at: np.ndarray, values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Values placed at key positions ``at`` in a column of n rows; the rest null. One copy (a take)."""
    inverse = np.full(n, -1, np.int64)
    inverse[at] = np.arange(len(at))
    return values.take(pa.array(inverse, mask=inverse < 0))


_KEYS = (
    "SELECT collection, id, kind, hash_before, hash_after, a_file, a_row, b_file, b_row FROM _k ORDER BY collection, id"
)
QUERY_COLUMNS = ("datetime", "start_datetime", "end_datetime", "bbox", "geometry")


def located_change_table(
    con: duckdb.DuckDBPyConnection,
    a: Stage,
    b: Stage,
    workers: int | None = None,
    collections: list[str] | None = None,
) -> pa.Table | None:
    """The change set rows of ``_k`` (as ``diff_changes.sql`` gives them, sorted by collection and id), or None
    when the SQL join should do it (texts over budget, or places DuckDB numbers differently). ``collections``: the
    views ``_a`` and ``_b`` are over these collections' files only (``source_sql``), which the places index."""
    a_paths, b_paths = a.file_paths(collections), b.file_paths(collections)
    keys = con.sql(_KEYS).to_arrow_table()
    kind = keys["kind"]
    b_jobs = _jobs(keys, "b", b_paths, pc.not_equal(kind, "deleted").combine_chunks())
    a_jobs = _jobs(keys, "a", a_paths, pc.equal(kind, "modified").combine_chunks())
    if _estimate(a_jobs, a) + _estimate(b_jobs, b) > TEXT_BUDGET:
        return None
    if not ((not a_jobs or _places_hold(con, a_paths)) and (not b_jobs or _places_hold(con, b_paths))):
        log.warning("diff: DuckDB numbers files differently than expected; reading the change set through SQL")
        return None
    stages = {"a": a, "b": b}
    n = keys.num_rows
    with ThreadPoolExecutor(max(1, workers or default_workers()) + 1) as pool:
        # B's query columns come from DuckDB while the texts are read page by page (both release the GIL)
        query = pool.submit(_query_columns, con, b_jobs, n)
        texts = list(
            pool.map(lambda j: take_rows(stages[j.side].fs, j.path, ["item"], j.rows)["item"], [*a_jobs, *b_jobs])
        )
        columns = query.result()
    before = _joined(a_jobs, texts[: len(a_jobs)])
    after = _joined(b_jobs, texts[len(a_jobs) :])
    patch = _patches(con, before, after, n)
    keep = [c for c in keys.column_names if not c.endswith(("_file", "_row"))]
    out = keys.select(keep)
    for c in QUERY_COLUMNS:
        out = out.append_column(c, columns[c])
    return out.append_column("item", _scatter(n, *after)).append_column("patch", patch)


def _joined(jobs: list[_Job], texts: list[pa.Array]) -> tuple[np.ndarray, pa.ChunkedArray]:
    """(key positions, texts) of all jobs of one side, in job order (no copy of the texts)."""
    at = np.concatenate([j.at for j in jobs]) if jobs else np.zeros(0, np.int64)
    return at, pa.chunked_array(texts, pa.large_string())


def _query_columns(con: duckdb.DuckDBPyConnection, jobs: list[_Job], n: int) -> dict[str, pa.ChunkedArray]:
    """B's query columns at the jobs' places, in key positions (null for keys B does not have)."""
    at = np.concatenate([j.at for j in jobs]) if jobs else np.zeros(0, np.int64)
    files = np.concatenate([np.full(len(j.rows), j.file) for j in jobs]) if jobs else np.zeros(0, np.int64)
    rows = np.concatenate([j.rows for j in jobs]) if jobs else np.zeros(0, np.int64)
    con.register("_places", pa.table({"n": at, "f": files.astype(np.int32), "r": rows}))
    try:
        got = con.sql(_sql.load("diff_places")).to_arrow_table()
    finally:
        con.unregister("_places")
    where = got["n"].to_numpy()
    return {c: _scatter(n, where, got[c]) for c in QUERY_COLUMNS}


def _patches(
    con: duckdb.DuckDBPyConnection,
    before: tuple[np.ndarray, pa.ChunkedArray],
    after: tuple[np.ndarray, pa.ChunkedArray],
    n: int,
) -> pa.ChunkedArray:
    """JSON merge patch text from before to after for the keys both sides have (the modified ones); null
    elsewhere."""
    if not len(before[0]):
        return pa.chunked_array([pa.nulls(n, pa.string())])
    con.register("_before", pa.table({"n": before[0], "t": before[1]}))
    con.register("_after", pa.table({"n": after[0], "t": after[1]}))
    try:
        got = con.sql(_sql.load("diff_patches")).to_arrow_table()
    finally:
        con.unregister("_before")
        con.unregister("_after")
    return _scatter(n, got["n"].to_numpy(), got["p"])
