"""``stacbatch extend``: apply an extension (built-in, installed, a module, or a declarative file) to staged items."""

from __future__ import annotations

import sys

import typer

from stacbatch.cli._common import info, require_stage, stage_option, state
from stacbatch.cli._edit import IDS_HELP, WHERE_HELP, report
from stacbatch.errors import ExitCode, InputError


def extend_cmd(
    stage: str | None = stage_option(),
    extension: str | None = typer.Option(
        None, "--extension", "-e", help="Name (built-in or installed), an extension file, or module:attribute."
    ),
    config: str | None = typer.Option(None, "--config", help="YAML/JSON configuration of the extension."),
    collection: list[str] = typer.Option([], "--collection", "-c", help="Only these collections (repeatable)."),
    where: str | None = typer.Option(None, "--where", "-w", help=WHERE_HELP),
    ids: str | None = typer.Option(None, "--ids", help=IDS_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Counts and a sample before/after; no writes."),
    no_validate: bool = typer.Option(False, "--no-validate", help="Do not validate the changed items afterwards."),
    schemas: list[str] = typer.Option(
        [], "--schemas", help="Schema folder for that validation (INDEX.json: URL -> file); also $STACBATCH_SCHEMAS."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: one per core)."),
    list_: bool = typer.Option(False, "--list", help="List the extensions found by name, and exit."),
) -> None:
    """Add an extension's fields to the selected items, and its schema URL to their stac_extensions (once).

    The same atomic commit, audit log and properties.updated stamping as `update`; a second run changes nothing.
    Items an extension cannot extend are counted per rule and left as they are; the changed items are validated.
    """
    from stacbatch.extend import available, extend, find, read_config

    if list_:
        for name, origin, summary in available():
            sys.stdout.write(f"{name}\t{origin}\t{summary}\n")
        return
    if not extension:
        raise InputError("give --extension NAME (stacbatch extend --list shows them), a file, or module:attribute")
    path = require_stage(stage)
    ext = find(extension).extension
    cfg = read_config(ext, config) if config else None
    from stacbatch.validate import Options, SchemaSource

    options = Options(source=SchemaSource.from_env(schemas))
    res = extend(
        path,
        ext,
        cfg,
        where=where,
        collections=collection or None,
        ids_file=ids,
        dry_run=dry_run,
        workers=workers,
        validate=not no_validate,
        validate_options=options,
    )
    info(f"extension {res.extension}: {res.schema_url}")
    report(res.edit)
    for rule, (n, why) in res.not_extended.items():
        info(f"  not extended by '{rule}': {n:,} item(s): {why}")
    if res.problems:
        info(f"  {len(res.problems):,} input(s) could not be used (their assets were left as they were):")
        for what, why in list(res.problems.items())[:10]:
            info(f"    {what}: {why}")
        if len(res.problems) > 10:
            info(f"    ... and {len(res.problems) - 10:,} more")
        state.exit_code = ExitCode.PARTIAL
    v = res.validation
    if v is not None:
        info(f"  validated what changed: {v.checked:,} checked, {v.valid:,} valid, {v.invalid:,} invalid")
        for rule, n in list(v.by_rule.items())[:5]:
            info(f"    {rule}: {n:,}")
        if v.invalid:
            if v.failures_file:
                info(f"    failures: {v.failures_file}")
            state.exit_code = ExitCode.PARTIAL
