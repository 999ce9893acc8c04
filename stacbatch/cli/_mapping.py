"""``stacbatch mapping check`` and the ``load --mapping`` report."""

from __future__ import annotations

import sys
from typing import Any

import typer

from stacbatch.cli._common import info, require_stage, stage_option, state
from stacbatch.errors import ExitCode

mapping_app = typer.Typer(
    help="Declarative mappings from tabular records to STAC items.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@mapping_app.command("check", help="Check a mapping against its schema (and, given a SOURCE, against its columns).")
def check_cmd(
    file: str = typer.Argument(..., help="The mapping (YAML or JSON)."),
    source: str | None = typer.Argument(None, help="A source file: also compile the mapping for its columns."),
    explain: bool = typer.Option(False, "--explain", help="Print the compiled SQL (needs SOURCE)."),
) -> None:
    from stacbatch.mapping import MappedSource, read_mapping

    doc = read_mapping(file)
    if source is None:
        info(f"mapping {file}: valid")
        return
    mapped = MappedSource(source, doc, sample=True)
    if explain:
        sys.stdout.write(explain_text(mapped))
    info(f"mapping {file}: valid; compiles for {source} ({len(mapped.columns)} columns)")


def explain_text(mapped: Any) -> str:
    lines = [f"-- source: {mapped.select}"]
    for n, kind, col in mapped.compiled.geometry:
        lines.append(f"-- geometry {n}: {kind} column {col!r} read per batch by shapely into __geom{n}_* columns")
    for name in mapped.compiled.lookups:
        lines.append(f"-- lookup table __lookup_{name}")
    return "\n".join([*lines, mapped.compiled.sql, ""])


def report(stats: dict[str, Any]) -> None:
    """Per source: rows, items, failures; per output field that converts or defaults: set / defaulted / failed."""
    for path, st in stats.items():
        info(f"  mapping {path}: {st.rows:,} records, {st.items:,} items, {st.failed:,} failed")
        for name, f in st.fields.items():
            if f.defaulted or f.failed:
                sample = f" (e.g. {f.sample!r})" if f.sample is not None else ""
                info(f"    {name}: {f.set:,} set, {f.defaulted:,} defaulted, {f.failed:,} failed{sample}")


def scaffold_cmd(
    sources: list[str] = typer.Argument(
        ..., metavar="SOURCE...", help="CSV, JSON, NDJSON, Parquet files or an API URL."
    ),
    mapping: str = typer.Option(..., "--mapping", "-m", help="The mapping (YAML or JSON)."),
    stage: str | None = stage_option(),
    title: str | None = typer.Option(None, "--title", help="Collection title."),
    description: str | None = typer.Option(None, "--description", help="Collection description."),
    license_: str | None = typer.Option(None, "--license", help="SPDX id, or 'other' (default for new ones)."),
    providers: list[str] = typer.Option([], "--provider", help="'Name' or 'Name:role,role' (repeatable)."),
    keywords: list[str] = typer.Option([], "--keyword", help="Collection keyword (repeatable)."),
    summaries: list[str] = typer.Option([], "--summary", help="Property to summarise (repeatable; default: common)."),
    to: str | None = typer.Option(None, "--to", help="Also emit the stage as a static STAC catalog here."),
    catalog_id: str = typer.Option("stacbatch", "--catalog-id", help="Root catalog id (with --to)."),
) -> None:
    """Stage items from tabular records with a mapping, then create or complete their Collections: extents and
    summaries computed from the items; the given description, license, providers, keywords, title."""
    from stacbatch.edit._collections import SUMMARY_DEFAULTS, update_collection
    from stacbatch.stage import open_stage
    from stacbatch.workflow import load

    path = require_stage(stage)
    res = load(path, list(sources), mapping=mapping)
    info(
        f"scaffold {res.run_id}: {res.read:,} records, {res.staged:,} items staged, {res.failed:,} failed; "
        f"{res.seconds:.1f} s"
    )
    report(res.mapping)
    st = open_stage(path)
    touched = [c for (c,) in st.sql("SELECT DISTINCT collection FROM audit WHERE run_id = ?", [res.run_id]).fetchall()]
    fields: dict[str, Any] = {"stac_version": "1.1.0"}
    for key, value in (("title", title), ("description", description), ("license", license_)):
        if value is not None:
            fields[key] = value
    if providers:
        fields["providers"] = [_provider(p) for p in providers]
    if keywords:
        fields["keywords"] = list(keywords)
    for cid in sorted(touched):
        done = update_collection(
            path, cid, [], extent=True, fields=fields, summaries=list(summaries or SUMMARY_DEFAULTS)
        )
        info(f"  collection {cid}: {', '.join(done.changed) or 'unchanged'}")
    if to:
        from stacbatch.emit import emit_json_tree

        out = emit_json_tree(open_stage(path), to, catalog_id=catalog_id, title=None)
        info(f"  static catalog written to {to} ({out.items:,} items)")
    if res.failed:
        state.exit_code = ExitCode.PARTIAL


def _provider(text: str) -> dict[str, Any]:
    name, _, roles = text.partition(":")
    out: dict[str, Any] = {"name": name.strip()}
    if roles.strip():
        out["roles"] = [r.strip() for r in roles.split(",") if r.strip()]
    return out


def transform_cmd(
    stage: str | None = stage_option(),
    mapping: str = typer.Option(..., "--mapping", "-m", help="The transform file (YAML or JSON)."),
    where: str | None = typer.Option(None, "--where", "-w", help="Only these items (SQL; the file's where too)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show what would change; write nothing."),
    create_parents: bool = typer.Option(
        False, "--create-parents", help="Create missing parent objects (a new asset); default: skip, and count."
    ),
) -> None:
    """Apply the mapping language to staged items: set (values from item paths, templates, SQL, CASE...), rename
    and unset fields; changed items get properties.updated and audit rows, as with update."""
    from stacbatch.cli._edit import report as edit_report
    from stacbatch.edit import update
    from stacbatch.mapping._transform import compile_transform

    ops, file_where = compile_transform(mapping)
    clauses = [f"({w})" for w in (file_where, where) if w]
    res = update(
        require_stage(stage), ops, where=" AND ".join(clauses) or None, dry_run=dry_run, create_parents=create_parents
    )
    edit_report(res)
