from __future__ import annotations

from typing import Any

import typer

from stacbatch.cli._common import info, require_stage, stage_option, state
from stacbatch.errors import ExitCode, InputError
from stacbatch.stage import open_stage


def emit_cmd(
    stage: str | None = stage_option(),
    fmt: str = typer.Option(..., "--format", "-f", help="ndjson | json (static catalog tree) | geoparquet"),
    to: str = typer.Option(..., "--to", "-o", help="Target folder (or, for ndjson, a .ndjson file)."),
    collection: list[str] = typer.Option([], "--collection", "-c", help="Only these collections (repeatable)."),
    where: str | None = typer.Option(
        None, "--where", "-w", help="SQL predicate over the items view; item paths allowed (properties.platform)."
    ),
    single_file: bool = typer.Option(False, "--single-file", help="ndjson: one file for all collections."),
    catalog_id: str | None = typer.Option(
        None, "--catalog-id", help="json: id of the root catalog (default: the staged root's, else stacbatch)."
    ),
    title: str | None = typer.Option(None, "--title", help="json: title of the root catalog."),
    organize_by: str | None = typer.Option(
        None,
        "--organize-by",
        help="json: collection | year | month (root -> collection [-> year [-> month]] -> items). Default: the "
        "staged static catalog's own tree when there is one, else collection.",
    ),
    force: bool = typer.Option(
        False, "--force", help="json: replace a non-empty folder that is not an earlier stacbatch tree (deleting it)."
    ),
    gate: str | None = typer.Option(
        None,
        "--validate",
        help="fail | skip | warn: validate first, then refuse to write, leave invalid items out, or write and report.",
    ),
    schemas: list[str] = typer.Option(
        [], "--schemas", help="With --validate: schema folder (INDEX.json); repeatable. Also $STACBATCH_SCHEMAS."
    ),
    checks: str | None = typer.Option(None, "--checks", help="With --validate: the checks (see `validate --help`)."),
) -> None:
    # imported here: the emit layer pulls in PySTAC, which other commands do not need
    from stacbatch.edit._ops import compile_where
    from stacbatch.emit import emit_geoparquet, emit_json_tree, emit_ndjson

    st = open_stage(require_stage(stage))
    colls = collection or None
    if fmt not in ("ndjson", "json", "geoparquet"):
        raise InputError(f"--format must be ndjson, json or geoparquet, got {fmt!r}")
    if organize_by is not None and fmt != "json":
        raise InputError(f"--organize-by applies to --format json only, not {fmt}")
    where = compile_where(st.connection, where)  # item paths such as properties."eo:cloud_cover" work here too
    if fmt == "ndjson":
        emit: Any = emit_ndjson
        kwargs: dict[str, Any] = {"split": False if single_file else None}
    elif fmt == "json":
        emit = emit_json_tree
        kwargs = {"catalog_id": catalog_id, "title": title, "force": force, "organize_by": organize_by}
    else:
        emit = emit_geoparquet
        kwargs = {}
    if gate is None:
        res = emit(st, to, collections=colls, where=where, **kwargs)
    else:
        from stacbatch.validate import Options, SchemaSource, parse_checks
        from stacbatch.workflow._emit import emit_validated

        options = Options(source=SchemaSource.from_env(schemas), checks=parse_checks(checks))
        st.close()
        res, checked = emit_validated(
            st.path, emit, gate=gate, options=options, collections=colls, where=where, to=to, **kwargs
        )
        left = " (left out)" if gate == "skip" else ""
        info(
            f"validate {checked.run_id}: {checked.checked:,} checked, {checked.invalid:,} invalid{left}"
            + (f"; failures: {checked.failures_file}" if checked.failures_file else "")
        )
        if checked.invalid and gate == "skip":
            state.exit_code = ExitCode.PARTIAL
    rate = res.items / res.seconds if res.seconds else 0.0
    info(
        f"emit {fmt}: {res.items:,} items from {res.collections} collection(s) to {to} "
        f"({len(res.files)} file(s) written at the top level; {res.seconds:.1f} s, {rate:,.0f} items/s)"
    )
