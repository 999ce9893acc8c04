from __future__ import annotations

import sys
from typing import Any

import typer

from stacbatch.cli._common import info, require_stage, stage_option, state
from stacbatch.cli._source_opts import SourceArgs, with_source_options
from stacbatch.errors import ExitCode, InputError
from stacbatch.stage import DEFAULT_BATCH_SIZE, LoadResult, format_failure
from stacbatch.workflow import failed_requests, load, resume_point


@with_source_options()
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
    mapping: str | None = typer.Option(
        None, "--mapping", "-m", help="Make items from tabular SOURCEs (CSV, JSON, NDJSON, Parquet) with this mapping."
    ),
    explain: bool = typer.Option(False, "--explain", help="With --mapping: print the compiled SQL; stage nothing."),
    queryables: str | None = typer.Option(
        None,
        "--queryables",
        help="Declare property column types: a STAC API Queryables JSON Schema, or {collection|'*': {name: type}} "
        "(JSON/YAML). Kept in the stage for later loads.",
    ),
    *,
    source: SourceArgs,
) -> None:
    if not sources and not resume and not retry_failed:
        raise typer.BadParameter("give at least one SOURCE (or --resume / --retry-failed RUN_ID)", param_hint="SOURCE")
    path = require_stage(stage)
    sources = list(sources or [])
    retry: list[dict[str, Any]] = []
    if retry_failed and resume:
        raise InputError("--retry-failed and --resume do not go together; run one, then the other")
    if retry_failed:
        sources, retry = failed_requests(path, retry_failed, sources)
    if resume:
        sources, retry = resume_point(path, sources)
    if not sources:
        raise InputError("load: give at least one SOURCE (a file, folder, catalog, stac-geoparquet file or API URL)")
    api = None
    doc = None
    if mapping is not None:
        from stacbatch.cli._mapping import explain_text
        from stacbatch.mapping import MappedSource, read_mapping

        doc = read_mapping(mapping)
        doc.http = source.http_options()
        if explain:
            for src in sources:
                sys.stdout.write(explain_text(MappedSource(src, doc, sample=True)))
            return
    elif explain:
        raise InputError("--explain goes with --mapping")
    if doc is None and any(s.startswith(("http://", "https://")) for s in sources):
        api = source.api_options(requests=retry, segment_items=0 if source.max_items else checkpoint_every)
    elif source.query_given():
        raise InputError("--collection, --bbox, --datetime, --ids and --max-items apply to STAC API URLs only")
    declared = None
    if queryables is not None:
        from stacbatch.stage import read_declared

        declared = read_declared(queryables)

    def segment(res: LoadResult) -> None:
        _report(res)
        if res.mapping:
            from stacbatch.cli._mapping import report

            report(res.mapping)

    load(
        path,
        sources,
        mapping=doc,
        api=api,
        batch_size=batch_size,
        workers=workers,
        time_bucket=time_bucket,
        queryables=declared,
        on_segment=segment,
    )


def _first_five(named: dict[str, Any], fmt: str) -> str:
    """``a (1), b (2) ... and N more``: a load's notes name a few, ``info`` all."""
    shown = ", ".join(f"{k} ({fmt.format(v)})" for k, v in sorted(named.items())[:5])
    return shown + (f" and {len(named) - 5:,} more" if len(named) > 5 else "")


def _report(res: Any) -> None:
    rate = res.read / res.seconds if res.seconds else 0.0
    info(
        f"load {res.run_id}: read {res.read:,}, staged {res.staged:,} ({res.new:,} new, {res.replaced:,} "
        f"replaced), {res.duplicates:,} superseded within input, failed {res.failed:,}; "
        f"{res.collections_staged} collection(s); {res.seconds:.1f} s, {rate:,.0f} items/s; stage v{res.stage_version}"
    )
    if res.not_of_type:
        info(
            f"  {sum(res.not_of_type.values()):,} property value(s) not of their column's type: "
            f"{_first_five(res.not_of_type, '{:,}')}; kept in the text (the column is NULL there)"
        )
    if res.text_only:
        info(
            f"  {len(res.text_only):,} property name(s) kept in the text only: {_first_five(res.text_only, '{}')}; "
            "`stacbatch info` lists all"
        )
    for skipped in res.skipped_stages:
        info(f"  left out {skipped}: a stacbatch stage inside a source folder (its files are not items)")
    if res.api is not None:
        a = res.api
        info(
            f"  API: {a.items:,} items in {a.pages:,} pages, {a.requests:,} requests, {a.retries:,} retries, "
            f"{a.queries:,} queries ({a.splits:,} windows split by count), {a.failed_queries:,} failed queries; "
            f"{a.seconds:.1f} s, {a.items / a.seconds if a.seconds else 0:,.0f} items/s"
        )
        if a.count_mismatches:
            ex = a.mismatch_examples[0]
            window = f" {ex['datetime']}" if ex["datetime"] else ""
            print(
                f"stacbatch: warning: the server's item count (numberMatched) disagreed with the items it returned in "
                f"{a.count_mismatches:,} quer{'y' if a.count_mismatches == 1 else 'ies'} (e.g. {ex['collection']}"
                f"{window}: counted {ex['matched']:,}, returned {ex['received']:,}); every next link was followed",
                file=sys.stderr,
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
