from __future__ import annotations

import sys

import typer

from stacbatch.cli._common import info, require_stage, stage_option, state
from stacbatch.errors import ExitCode
from stacbatch.stage import DEFAULT_BATCH_SIZE, load
from stacbatch.stage._load import print_progress
from stacbatch.stage._runs import format_failure


def load_cmd(
    sources: list[str] = typer.Argument(
        ...,
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
) -> None:
    path = require_stage(stage)
    progress = print_progress() if sys.stderr.isatty() and not state.quiet else None
    res = load(
        path,
        sources,
        batch_size=batch_size,
        workers=workers,
        time_bucket=time_bucket,
        progress=progress,
    )
    if progress:
        sys.stderr.write("\r")
    rate = res.read / res.seconds if res.seconds else 0.0
    info(
        f"load {res.run_id}: read {res.read:,}, staged {res.staged:,} ({res.new:,} new, {res.replaced:,} "
        f"replaced), {res.duplicates:,} superseded within input, failed {res.failed:,}; "
        f"{res.collections_staged} collection(s); {res.seconds:.1f} s, {rate:,.0f} items/s; stage v{res.stage_version}"
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
