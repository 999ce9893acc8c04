"""``stacbatch mapping check`` and the ``load --mapping`` report."""

from __future__ import annotations

import sys
from typing import Any

import typer

from stacbatch.cli._common import info

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
    mapped = MappedSource(source, doc)
    if explain:
        sys.stdout.write(explain_text(mapped))
    info(f"mapping {file}: valid; compiles for {source} ({len(mapped.columns)} columns)")


def explain_text(mapped: Any) -> str:
    lines = [f"-- source: {mapped.select}"]
    if mapped.compiled.geometry:
        kind, col = mapped.compiled.geometry
        lines.append(f"-- geometry: {kind} column {col!r} read per batch by shapely into __geom_* columns")
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
