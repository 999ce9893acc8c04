from __future__ import annotations

import sys
from typing import Any

import orjson
import typer

from stacbatch.cli._common import info, require_stage, stage_option, state
from stacbatch.errors import ExitCode, InputError
from stacbatch.stage import DEFAULT_BATCH_SIZE, load
from stacbatch.stage._load import print_progress
from stacbatch.stage._runs import format_failure


def load_cmd(
    sources: list[str] = typer.Argument(
        None,
        metavar="SOURCE...",
        help="NDJSON (.gz), JSON, folder, catalog.json, collection.json or stac-geoparquet file.",
    ),
    stage: str | None = stage_option(),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", help="Items per parse batch."),
    workers: int | None = typer.Option(None, "--workers", help="Parser processes (default: one per core)."),
    time_bucket: str | None = typer.Option(
        None,
        "--time-bucket",
        help="none | year | month: time partitions of large new collections (stage default: year).",
    ),
    collection: list[str] = typer.Option([], "--collection", "-c", help="API: collection ids or globs (repeatable)."),
    bbox: str | None = typer.Option(None, "--bbox", help="API: west,south,east,north."),
    datetime_: str | None = typer.Option(None, "--datetime", help="API: RFC 3339 datetime or interval a/b (.. open)."),
    ids: str | None = typer.Option(None, "--ids", help="API: comma-separated item ids."),
    max_items: int | None = typer.Option(None, "--max-items", help="API: stop after this many items."),
    concurrency: int = typer.Option(8, "--concurrency", help="API: requests in flight."),
    rate_limit: float | None = typer.Option(None, "--rate-limit", help="API: requests per second per host."),
    max_retries: int = typer.Option(5, "--max-retries", help="API: retries of a failing request (429, 5xx, timeouts)."),
    timeout: float = typer.Option(60.0, "--timeout", help="API: seconds per request."),
    header: list[str] = typer.Option([], "--header", "-H", help='API: "Name: value" (${ENV} expanded; repeatable).'),
    method: str = typer.Option("auto", "--method", help="API: auto | GET | POST item search."),
    resume: bool = typer.Option(
        False, "--resume", help="API: go on where the last interrupted load from an API stopped (its checkpoint)."
    ),
    checkpoint_every: int = typer.Option(
        100_000,
        "--checkpoint-every",
        help="API: commit and checkpoint after about this many items (0: only at the end).",
    ),
    retry_failed: str | None = typer.Option(
        None, "--retry-failed", help="API: fetch again just the queries that failed in this run of the stage."
    ),
    windows: int | None = typer.Option(
        None,
        "--windows",
        help="API: time windows per collection fetched concurrently (default: to fill --concurrency).",
    ),
    mapping: str | None = typer.Option(
        None, "--mapping", "-m", help="Make items from tabular SOURCEs (CSV, JSON, NDJSON, Parquet) with this mapping."
    ),
    explain: bool = typer.Option(False, "--explain", help="With --mapping: print the compiled SQL; stage nothing."),
    window_pages: int = typer.Option(
        10,
        "--window-pages",
        help="API: split a window further when the server's count says it has more pages than this (0: never).",
    ),
) -> None:
    if not sources and not resume and not retry_failed:
        raise typer.BadParameter("give at least one SOURCE (or --resume / --retry-failed RUN_ID)", param_hint="SOURCE")
    path = require_stage(stage)
    sources = list(sources or [])
    retry: list[dict[str, Any]] = []
    if retry_failed and resume:
        raise InputError("--retry-failed and --resume do not go together; run one, then the other")
    if retry_failed:
        sources, retry = _failed_requests(path, retry_failed, sources)
    if resume:
        sources, retry = _checkpoint(path, sources)
    if not sources:
        raise InputError("load: give at least one SOURCE (a file, folder, catalog, stac-geoparquet file or API URL)")
    api = None
    doc = None
    if mapping is not None:
        from stacbatch._headers import parse_headers
        from stacbatch.cli._mapping import explain_text
        from stacbatch.mapping import MappedSource, read_mapping

        doc = read_mapping(mapping)
        doc.http = {
            "rate_limit": rate_limit,
            "max_retries": max_retries,
            "timeout": timeout,
            "headers": parse_headers(header),
        }
        if explain:
            for src in sources:
                sys.stdout.write(explain_text(MappedSource(src, doc, sample=True)))
            return
    elif explain:
        raise InputError("--explain goes with --mapping")
    if doc is None and any(s.startswith(("http://", "https://")) for s in sources):
        from stacbatch.api import ApiOptions, check_datetime, parse_bbox, parse_headers

        if method.upper() not in ("AUTO", "GET", "POST"):
            raise InputError(f"--method must be auto, GET or POST, got {method!r}")
        if windows is not None and windows < 1:
            raise InputError(f"--windows must be at least 1, got {windows}")
        if window_pages < 0:
            raise InputError(f"--window-pages must be 0 (never split) or more, got {window_pages}")
        if max_items is not None and max_items < 1:
            raise InputError(f"--max-items must be at least 1, got {max_items}")
        api = ApiOptions(
            collections=collection,
            bbox=parse_bbox(bbox) if bbox else None,
            datetime=check_datetime(datetime_) if datetime_ else None,
            ids=[i for i in ids.split(",") if i] if ids else None,
            max_items=max_items,
            concurrency=concurrency,
            rate_limit=rate_limit,
            max_retries=max_retries,
            timeout=timeout,
            headers=parse_headers(header),
            method=method.upper() if method.upper() != "AUTO" else "auto",
            windows=windows,
            window_pages=window_pages,
            requests=retry,
            segment_items=0 if max_items else checkpoint_every,
        )
    elif collection or bbox or datetime_ or ids or max_items:
        raise InputError("--collection, --bbox, --datetime, --ids and --max-items apply to STAC API URLs only")
    progress = print_progress() if sys.stderr.isatty() and not state.quiet else None
    while True:
        res = load(
            path,
            sources,
            batch_size=batch_size,
            workers=workers,
            time_bucket=time_bucket,
            progress=progress,
            api=api,
            mapping=doc,
        )
        if progress:
            sys.stderr.write("\r")
        _report(res)
        if res.mapping:
            from stacbatch.cli._mapping import report

            report(res.mapping)
        if api is None:
            return
        # Committed: record where every unfinished query goes on, so that a kill loses at most one segment.
        _write_checkpoint(path, sources[0], res)
        if res.api_done or not res.api_pending:
            _write_checkpoint(path, sources[0], None)
            return
        api.requests = res.api_pending


def _report(res: Any) -> None:
    rate = res.read / res.seconds if res.seconds else 0.0
    info(
        f"load {res.run_id}: read {res.read:,}, staged {res.staged:,} ({res.new:,} new, {res.replaced:,} "
        f"replaced), {res.duplicates:,} superseded within input, failed {res.failed:,}; "
        f"{res.collections_staged} collection(s); {res.seconds:.1f} s, {rate:,.0f} items/s; stage v{res.stage_version}"
    )
    if res.api is not None:
        a = res.api
        info(
            f"  API: {a.items:,} items in {a.pages:,} pages, {a.requests:,} requests, {a.retries:,} retries, "
            f"{a.queries:,} queries ({a.splits:,} windows split by count), {a.failed_queries:,} failed queries; "
            f"{a.seconds:.1f} s, {a.items / a.seconds if a.seconds else 0:,.0f} items/s"
        )
    if res.failed:
        for rec in res.first_failures:
            print(f"stacbatch: failed: {format_failure(rec)}", file=sys.stderr)
        more = res.failed - len(res.first_failures)
        print(
            f"stacbatch: {res.failed:,} failure(s){f' ({more:,} more not shown)' if more > 0 else ''}; "
            f"all in {res.failures_file}",
            file=sys.stderr,
        )
        state.exit_code = ExitCode.PARTIAL


def _failed_requests(stage: str, run_id: str, sources: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """The API queries that failed in an earlier run: (their API URLs, their failure records)."""
    from stacbatch import _fs
    from stacbatch.stage._layout import RUNS

    fs, root = _fs.filesystem(stage)
    path = _fs.join(root, RUNS, run_id, "failures.ndjson")
    if not fs.exists(_fs.join(root, RUNS, run_id)):
        raise InputError(f"--retry-failed {run_id}: no such run in {stage} (see its runs/ folder)")
    records = []
    if fs.exists(path):
        with fs.open(path, "rb") as f:
            records = [orjson.loads(line) for line in f.read().splitlines() if line.strip()]
    failed = [r for r in records if isinstance(r.get("request"), dict) and r.get("collection")]
    if not failed:
        raise InputError(f"--retry-failed {run_id}: that run has no failed API queries to retry")
    urls = sorted({str(r["source"]) for r in failed})
    if len(urls) > 1 or (sources and sources != urls):
        raise InputError(f"--retry-failed {run_id}: its failures come from {', '.join(urls)}; give that URL or none")
    return urls, failed


CHECKPOINT = "api-checkpoint.json"


def _write_checkpoint(stage: str, url: str, res: Any) -> None:
    """``runs/api-checkpoint.json``: the API, and for each unfinished query the request that continues it. Written
    after the segment's commit (a kill in between only means one segment is fetched again; staging is idempotent:
    last wins). Removed when the load finishes. Request headers are not stored: they may hold secrets."""
    from stacbatch import _fs
    from stacbatch.stage._layout import RUNS

    fs, root = _fs.filesystem(stage)
    target = _fs.join(root, RUNS, CHECKPOINT)
    if res is None:
        if fs.exists(target):
            fs.rm(target)
        return
    doc = {"url": url, "run_id": res.run_id, "pending": res.api_pending}
    _fs.atomic_write_bytes(fs, target, orjson.dumps(doc, option=orjson.OPT_INDENT_2))


def _checkpoint(stage: str, sources: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    from stacbatch import _fs
    from stacbatch.stage._layout import RUNS

    fs, root = _fs.filesystem(stage)
    target = _fs.join(root, RUNS, CHECKPOINT)
    if not fs.exists(target):
        raise InputError(f"--resume: {stage} has no interrupted API load to resume (no runs/{CHECKPOINT})")
    with fs.open(target, "rb") as f:
        doc = orjson.loads(f.read())
    if sources and sources != [doc["url"]]:
        raise InputError(f"--resume: the interrupted load was from {doc['url']}; give that URL or none")
    if not doc["pending"]:
        raise InputError("--resume: nothing left to fetch")
    return [doc["url"]], list(doc["pending"])
