from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import orjson
import typer

from stacbatch.cli._common import info, require_stage, stage_option, state
from stacbatch.cli._source_opts import SourceArgs, with_source_options
from stacbatch.cli._table import render
from stacbatch.errors import ExitCode, InputError

if TYPE_CHECKING:  # the edit layer (DuckDB, Arrow compute) is imported by the commands that use it
    from stacbatch.edit._diff import DiffResult
    from stacbatch.edit._merge import MergeResult


def _api_options(source: SourceArgs, locations: list[str], collections: list[str] | None = None) -> Any:
    """The ``ApiOptions`` for the locations that are STAC API URLs (None when none is); ``collections``: the
    command's own ``-c``, which an API source fetches."""
    if not any(loc.startswith(("http://", "https://")) for loc in locations):
        if source.query_given():
            raise InputError("--collection, --bbox, --datetime, --ids and --max-items apply to STAC API URLs only")
        return None
    if collections is not None:
        source.collection = list(collections)
    return source.api_options()


@with_source_options(skip=("collection",))
def diff_cmd(
    a: str = typer.Argument(..., help="Before: a stage, or anything `load` reads."),
    b: str = typer.Argument(..., help="After: a stage, or anything `load` reads."),
    out: str | None = typer.Option(None, "--out", "-o", help="Write the change set as Parquet here."),
    ndjson: str | None = typer.Option(None, "--ndjson", help="Also write the change set as NDJSON here."),
    ignore: list[str] = typer.Option([], "--ignore", help="PATH whose changes do not count (repeatable)."),
    collections: list[str] = typer.Option(
        [], "--collection", "-c", help="Compare only these (repeatable); from an API, fetch only these."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json: how the counts are printed."),
    exit_code: bool = typer.Option(False, "--exit-code", help="Exit 1 when there are differences."),
    *,
    source: SourceArgs,
) -> None:
    if fmt not in ("table", "json"):
        raise InputError(f"--format must be table or json, got {fmt!r}")
    from stacbatch.edit._diff import diff

    api = _api_options(source, [a, b], collections)
    res = diff(a, b, out=out, ndjson=ndjson, ignore=ignore, collections=collections or None, api=api)
    sys.stdout.write(_json(res) if fmt == "json" else _table(res))
    t = res.totals()
    where = f"; change set: {out}" if out else ""
    info(
        f"diff: {t['added']:,} added, {t['deleted']:,} deleted, {t['modified']:,} modified, "
        f"{t['unchanged']:,} unchanged; {res.seconds:.1f} s{where}"
    )
    if exit_code and res.differs:
        state.exit_code = ExitCode.DIFFERENCES


def _table(res: DiffResult) -> str:
    from stacbatch.edit._diff import KINDS

    rows = [[c, *(f"{k[x]:,}" for x in KINDS)] for c, k in sorted(res.counts.items())]
    rows.append(["total", *(f"{v:,}" for v in res.totals().values())])
    return render(["collection", *KINDS], rows, right=tuple(range(1, len(KINDS) + 1)))


def _json(res: DiffResult) -> str:
    doc = {
        "a": res.a,
        "b": res.b,
        "collections": res.counts,
        "total": res.totals(),
        "changes_written": res.changes_written,
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


@with_source_options()
def merge_cmd(
    location: str = typer.Argument(
        ..., metavar="SOURCE", help="A stage, a change set from `diff --out`, or anything `load` reads."
    ),
    stage: str | None = stage_option(),
    mode: str = typer.Option("upsert", "--mode", "-m", help="upsert | insert-only | mirror (upsert + deletions)."),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes for file rewrites."),
    *,
    source: SourceArgs,
) -> None:
    from stacbatch.edit._merge import MODES, merge

    if mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    target = require_stage(stage)
    res = merge(target, location, mode=mode, workers=workers, api=_api_options(source, [location]))
    _merge_report(res)


def _merge_report(res: MergeResult) -> None:
    info(
        f"merge {res.run_id} ({res.mode}): {res.inserted:,} inserted, {res.replaced:,} replaced, {res.deleted:,} "
        f"deleted, {res.unchanged:,} unchanged, {res.skipped:,} skipped by the mode; "
        f"{res.collections_staged} collection(s); {res.seconds:.1f} s; stage v{res.stage_version}"
    )
    for c, k in sorted(res.per_collection.items()):
        if k["added"] or k["modified"] or k["deleted"]:
            info(f"  {c}: source has {k['added']:,} new, {k['modified']:,} changed, {k['deleted']:,} gone")
