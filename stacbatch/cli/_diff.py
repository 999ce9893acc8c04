from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import orjson
import typer

from stacbatch.cli._common import info, require_stage, stage_option, state
from stacbatch.errors import ExitCode, InputError

if TYPE_CHECKING:  # the edit layer (DuckDB, Arrow compute) is imported by the commands that use it
    from stacbatch.edit._diff import DiffResult
    from stacbatch.edit._merge import MergeResult


def diff_cmd(
    a: str = typer.Argument(..., help="Before: a stage, or anything `load` reads."),
    b: str = typer.Argument(..., help="After: a stage, or anything `load` reads."),
    out: str | None = typer.Option(None, "--out", "-o", help="Write the change set as Parquet here."),
    ndjson: str | None = typer.Option(None, "--ndjson", help="Also write the change set as NDJSON here."),
    ignore: list[str] = typer.Option([], "--ignore", help="PATH whose changes do not count (repeatable)."),
    collections: list[str] = typer.Option([], "--collection", "-c", help="Compare only these (repeatable)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json: how the counts are printed."),
    exit_code: bool = typer.Option(False, "--exit-code", help="Exit 1 when there are differences."),
) -> None:
    if fmt not in ("table", "json"):
        raise InputError(f"--format must be table or json, got {fmt!r}")
    from stacbatch.edit._diff import diff

    res = diff(a, b, out=out, ndjson=ndjson, ignore=ignore, collections=collections or None)
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
    head = ["collection", *KINDS]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = []
    for r in [head, *rows]:
        lines.append(
            "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True)))
        )
    return "\n".join(lines) + "\n"


def _json(res: DiffResult) -> str:
    doc = {
        "a": res.a,
        "b": res.b,
        "collections": res.counts,
        "total": res.totals(),
        "changes_written": res.changes_written,
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def merge_cmd(
    source: str = typer.Argument(..., help="A stage, a change set from `diff --out`, or anything `load` reads."),
    stage: str | None = stage_option(),
    mode: str = typer.Option("upsert", "--mode", "-m", help="upsert | insert-only | mirror (upsert + deletions)."),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes for file rewrites."),
) -> None:
    from stacbatch.edit._merge import MODES, merge

    if mode not in MODES:
        raise InputError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    res = merge(require_stage(stage), source, mode=mode, workers=workers)
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
