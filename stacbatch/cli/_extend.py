"""``stacbatch extend``: apply an extension (built-in, installed, a module, or a declarative file) to staged items."""

from __future__ import annotations

import sys
from typing import Any

import typer

from stacbatch.cli._common import info, require_stage, stage_option, state
from stacbatch.cli._edit import IDS_HELP, WHERE_HELP, report
from stacbatch.errors import ExitCode, InputError


def _report_validation(v: Any) -> None:
    """The validation of what a run changed, if any ran; exit 3 when something is invalid."""
    if v is None:
        return
    info(f"  validated what changed: {v.checked:,} checked, {v.valid:,} valid, {v.invalid:,} invalid")
    for rule, n in list(v.by_rule.items())[:5]:
        info(f"    {rule}: {n:,}")
    if v.invalid:
        if v.failures_file:
            info(f"    failures: {v.failures_file}")
        state.exit_code = ExitCode.PARTIAL


def _collection_option() -> Any:
    return typer.Option([], "--collection", "-c", help="Only these collections (repeatable).")


def _dry_run_option() -> Any:
    return typer.Option(False, "--dry-run", "-n", help="Counts and a sample before/after; no writes.")


def _schemas_option() -> Any:
    return typer.Option(
        [], "--schemas", help="Schema folder for that validation (INDEX.json: URL -> file); also $STACBATCH_SCHEMAS."
    )


def _workers_option() -> Any:
    return typer.Option(None, "--workers", help="Worker processes (default: one per core).")


def extend_cmd(
    stage: str | None = stage_option(),
    extension: str | None = typer.Option(
        None, "--extension", "-e", help="Name (built-in or installed), an extension file, or module:attribute."
    ),
    config: str | None = typer.Option(None, "--config", help="YAML/JSON configuration of the extension."),
    collection: list[str] = _collection_option(),
    where: str | None = typer.Option(None, "--where", "-w", help=WHERE_HELP),
    ids: str | None = typer.Option(None, "--ids", help=IDS_HELP),
    dry_run: bool = _dry_run_option(),
    no_validate: bool = typer.Option(False, "--no-validate", help="Do not validate the changed items afterwards."),
    schemas: list[str] = _schemas_option(),
    workers: int | None = _workers_option(),
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
    if res.up_to_date:
        info("  nothing to do: the stage's items and the extension's inputs are as its last run left them")
        return
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
    _report_validation(res.validation)


def migrate_cmd(
    stage: str | None = stage_option(),
    to: str = typer.Option("1.1.0", "--to", help="The STAC version to migrate to (1.1.0)."),
    collection: list[str] = _collection_option(),
    where: str | None = typer.Option(None, "--where", "-w", help=WHERE_HELP),
    ids: str | None = typer.Option(None, "--ids", help=IDS_HELP),
    dry_run: bool = _dry_run_option(),
    no_validate: bool = typer.Option(False, "--no-validate", help="Do not validate the migrated items afterwards."),
    schemas: list[str] = _schemas_option(),
    workers: int | None = _workers_option(),
) -> None:
    """Migrate the selected STAC 1.0.0 items to 1.1.0, with the result PySTAC's migration gives each item.

    stac_version, licenses, and the extensions PySTAC knows (schema URLs to their current versions; projection's
    proj:epsg to proj:code; classification's color-hint). One atomic commit with audit rows; items at other
    versions or with extensions whose fields change shape are reported and left. The migrated items are validated.
    """
    from stacbatch.extend import migrate
    from stacbatch.validate import Options, SchemaSource

    path = require_stage(stage)
    res = migrate(
        path,
        to,
        where=where,
        collections=collection or None,
        ids_file=ids,
        dry_run=dry_run,
        workers=workers,
        validate=not no_validate,
        validate_options=Options(source=SchemaSource.from_env(schemas)),
    )
    report(res.edit)
    for why, n in res.not_migrated.items():
        info(f"  not migrated: {n:,} item(s): {why}")
    _report_validation(res.validation)
