"""A load as a user runs it: through a mapping, or from a STAC API in segments, each committed and then
checkpointed (``runs/api-checkpoint.json``), so that a kill loses at most one segment and ``resume_point`` knows
where to go on."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import orjson

from stacbatch.engine import _fs
from stacbatch.engine._layout import RUNS
from stacbatch.errors import InputError
from stacbatch.stage import DEFAULT_BATCH_SIZE, LoadResult
from stacbatch.stage import load as load_segment

#: in the stage's ``runs/`` folder while an API load is unfinished
CHECKPOINT = "api-checkpoint.json"


def load(
    stage: str,
    sources: list[str],
    *,
    mapping: Any = None,
    api: Any = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    time_bucket: str | None = None,
    queryables: dict[str, dict[str, str]] | None = None,
    on_segment: Callable[[LoadResult], None] | None = None,
) -> LoadResult:
    """Stage items from files, folders, static catalogs, stac-geoparquet, STAC API URLs, or tabular files through
    a mapping; return the result of the last segment.

    ``mapping``: a mapping document (``stacbatch.mapping.read_mapping``) or its path; every source then goes
    through it. ``api``: options for STAC API URLs (``stacbatch.api.ApiOptions``); with ``segment_items`` set,
    the load commits every that many items, calls ``on_segment`` with each segment's result and keeps the
    checkpoint up to date. An interrupt (KeyboardInterrupt) records where the unfinished segment began, then
    goes on being raised.
    """
    mapped = None
    if mapping is not None:
        from stacbatch.mapping import MappedSource, read_mapping

        doc = read_mapping(mapping) if isinstance(mapping, str) else mapping
        mapped = partial(_mapped_source, MappedSource, doc)
    run = partial(
        load_segment,
        stage,
        sources,
        batch_size=batch_size,
        workers=workers,
        time_bucket=time_bucket,
        api=api,
        mapped=mapped,
    )
    if api is None or not any(s.startswith(("http://", "https://")) for s in sources):
        res = run(queryables=queryables)
        if on_segment is not None:
            on_segment(res)
        return res
    try:
        while True:
            res = run(queryables=queryables)
            queryables = None  # kept in the stage by the first segment
            if on_segment is not None:
                on_segment(res)
            # committed: record where every unfinished query goes on
            _write_checkpoint(stage, sources[0], res.run_id, res.api_pending)
            if res.api_done or not res.api_pending:
                _remove_checkpoint(stage)
                return res
            api.requests = res.api_pending
    except KeyboardInterrupt:
        pending = api.requests or api.started  # nothing of this segment was committed: go on where it began
        if pending:
            _write_checkpoint(stage, sources[0], None, pending)
        raise


def _mapped_source(cls: Any, doc: Any, path: str, batch_rows: int) -> Any:
    return cls(path, doc, batch_rows)


def resume_point(stage: str, sources: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """The API URL of the interrupted load of ``stage`` and, for each unfinished query, the request that continues
    it. ``sources``: what the user named (nothing, or that URL)."""
    fs, root = _fs.filesystem(stage)
    target = _fs.join(root, RUNS, CHECKPOINT)
    if not fs.exists(target):
        raise InputError(f"resume: {stage} has no interrupted API load to resume (no runs/{CHECKPOINT})")
    with fs.open(target, "rb") as f:
        doc = orjson.loads(f.read())
    if sources and sources != [doc["url"]]:
        raise InputError(f"resume: the interrupted load was from {doc['url']}; give that URL or none")
    if not doc["pending"]:
        raise InputError("resume: nothing left to fetch")
    return [doc["url"]], list(doc["pending"])


def failed_requests(stage: str, run_id: str, sources: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """The API queries that failed in an earlier run: (their API URL, their failure records)."""
    fs, root = _fs.filesystem(stage)
    path = _fs.join(root, RUNS, run_id, "failures.ndjson")
    if not fs.exists(_fs.join(root, RUNS, run_id)):
        raise InputError(f"retry of {run_id}: no such run in {stage} (see its runs/ folder)")
    records = []
    if fs.exists(path):
        with fs.open(path, "rb") as f:
            records = [orjson.loads(line) for line in f.read().splitlines() if line.strip()]
    failed = [r for r in records if isinstance(r.get("request"), dict) and r.get("collection")]
    if not failed:
        raise InputError(f"retry of {run_id}: that run has no failed API queries to retry")
    urls = sorted({str(r["source"]) for r in failed})
    if len(urls) > 1 or (sources and sources != urls):
        raise InputError(f"retry of {run_id}: its failures come from {', '.join(urls)}; give that URL or none")
    return urls, failed


def _write_checkpoint(stage: str, url: str, run_id: str | None, pending: list[dict[str, Any]]) -> None:
    """``runs/api-checkpoint.json``: the API, and for each unfinished query the request that continues it. Written
    after a segment's commit (a kill in between only means one segment is fetched again; staging is idempotent:
    last wins), or at an interrupt (where the uncommitted segment began). Request headers are not stored: they may
    hold secrets."""
    fs, root = _fs.filesystem(stage)
    doc = {"url": url, "run_id": run_id, "pending": pending}
    _fs.atomic_write_bytes(fs, _fs.join(root, RUNS, CHECKPOINT), orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def _remove_checkpoint(stage: str) -> None:
    fs, root = _fs.filesystem(stage)
    target = _fs.join(root, RUNS, CHECKPOINT)
    if fs.exists(target):
        fs.rm(target)
