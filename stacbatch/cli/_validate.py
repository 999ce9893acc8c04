"""``stacbatch validate`` and ``stacbatch schemas``."""

from __future__ import annotations

import sys
from typing import Any

import orjson
import typer

from stacbatch.cli._common import info, stage_option, state
from stacbatch.cli._source_opts import SourceArgs, with_source_options
from stacbatch.cli._table import render
from stacbatch.errors import ExitCode, InputError


@with_source_options(skip=("collection", "ids"))
def validate_cmd(
    sources: list[str] = typer.Argument(
        None, metavar="[SOURCE]...", help="Files, folders, catalogs or API URLs (default: the stage)."
    ),
    stage: str | None = stage_option(),
    collections: list[str] = typer.Option([], "--collection", "-c", help="Only these collections (repeatable)."),
    where: str | None = typer.Option(None, "--where", help="Only staged items matching this SQL predicate."),
    ids: str | None = typer.Option(None, "--ids", help="Only staged items listed in this file."),
    schemas: list[str] = typer.Option(
        [], "--schemas", help="Schema folder with an INDEX.json (URL -> file); repeatable. Also $STACBATCH_SCHEMAS."
    ),
    schema: list[str] = typer.Option(
        [], "--schema", help="A custom schema FILE every selected object must also pass (with -c: those collections')."
    ),
    checks: str | None = typer.Option(
        None,
        "--checks",
        help="default | all | none | NAME,... | -NAME,...: datetime, time-order, bbox, geometry, asset-href, "
        "extension-declared, alternate-href, formats (not in default).",
    ),
    engine: str = typer.Option("stacbatch", "--engine", help="stacbatch | stac-valid (the reference tool, slow)."),
    failures: str | None = typer.Option(None, "--failures", help="Also write one line per invalid object here."),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: one per core)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json: how the summary is printed."),
    *,
    source: SourceArgs,
) -> None:
    """Validate STAC Items, Collections and Catalogs against the schemas their stac_version and stac_extensions name,
    and the named checks; exit 0 when all are valid, 3 when some are not."""
    from stacbatch.validate import Options, SchemaSource, parse_checks, validate

    if fmt not in ("table", "json"):
        raise InputError(f"--format must be table or json, got {fmt!r}")
    if engine not in ("stacbatch", "stac-valid"):
        raise InputError(f"--engine must be stacbatch or stac-valid, got {engine!r}")
    targets = list(sources or [])
    if not targets:
        if not stage:
            raise InputError("validate what? give SOURCE files or URLs, or --stage DIR (or set STACBATCH_STAGE)")
        targets = [stage]
    elif stage:
        raise InputError("give SOURCEs or --stage, not both")
    scope: list[str | None] = [*collections] if collections else [None]
    options = Options(
        source=SchemaSource.from_env(schemas),
        checks=parse_checks(checks),
        custom=tuple((c, f) for f in schema for c in scope),
    )
    if engine == "stac-valid":
        from stacbatch.validate._reference import validate_with_stac_valid

        res = validate_with_stac_valid(targets, options, collections=collections or None, failures=failures)
    else:
        api = None
        if any(t.startswith(("http://", "https://")) for t in targets):
            if collections:
                source.collection = list(collections)
            api = source.api_options()
        res = validate(
            targets if len(targets) > 1 else targets[0],
            options=options,
            collections=collections or None,
            where=where,
            ids_file=ids,
            workers=workers,
            failures=failures,
            api=api,
        )
    sys.stdout.write(_json(res) if fmt == "json" else _table(res))
    rate = res.checked / res.seconds if res.seconds else 0.0
    where_file = f"; failures: {res.failures_file}" if res.failures_file else ""
    info(
        f"validate {res.run_id}: {res.checked:,} checked, {res.valid:,} valid, {res.invalid:,} invalid; "
        f"{res.seconds:.1f} s, {rate:,.0f} objects/s{where_file}"
    )
    if res.invalid:
        state.exit_code = ExitCode.PARTIAL


def _table(res: Any) -> str:
    rows = [
        [str(c) if c is not None else "(catalogs)", f"{v['checked']:,}", f"{v['valid']:,}", f"{v['invalid']:,}"]
        for c, v in sorted(res.per_collection.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    ]
    rows.append(["total", f"{res.checked:,}", f"{res.valid:,}", f"{res.invalid:,}"])
    text = render(["collection", "checked", "valid", "invalid"], rows, right=(1, 2, 3))
    if res.by_rule:
        text += "\n" + render(["rule", "invalid objects"], [[r, f"{n:,}"] for r, n in res.by_rule.items()], right=(1,))
    return text


def _json(res: Any) -> str:
    doc = {
        "run_id": res.run_id,
        "checked": res.checked,
        "valid": res.valid,
        "invalid": res.invalid,
        "per_collection": {str(k) if k is not None else None: v for k, v in res.per_collection.items()},
        "by_rule": res.by_rule,
        "failures_file": res.failures_file,
        "seconds": round(res.seconds, 3),
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n"


schemas_app = typer.Typer(
    help="The schemas validation reads (folders, the local cache, those bundled with stacbatch); fetching them."
)


@schemas_app.command("list")
def schemas_list(
    schemas: list[str] = typer.Option([], "--schemas", help="Schema folder (repeatable); also $STACBATCH_SCHEMAS."),
) -> None:
    """Every schema URL validation can resolve offline, and the file it comes from."""
    from stacbatch.validate import SchemaSource, SchemaStore

    store = SchemaStore(SchemaSource.from_env(schemas))
    for url in store.urls():
        sys.stdout.write(f"{url}\t{store.files[url]}\n")
    info(f"schemas: {len(store.urls()):,} URL(s) from, in this order: {', '.join(store.folders())}")


@schemas_app.command("fetch")
def schemas_fetch(
    urls: list[str] = typer.Argument(..., metavar="URL...", help="Schema URLs to fetch with what they reference."),
    schemas: list[str] = typer.Option([], "--schemas", help="Folders whose schemas need no fetching."),
) -> None:
    """Download schemas (and the documents their $refs name) into the local cache, for offline validation."""
    from pathlib import Path

    from stacbatch.validate import SchemaSource
    from stacbatch.validate._fetch import fetch

    src = SchemaSource.from_env(schemas)
    assert src.cache is not None
    got, had = fetch(list(urls), Path(src.cache), src)
    for url in got:
        sys.stdout.write(f"{url}\n")
    info(f"schemas fetch: {len(got)} fetched into {src.cache}, {len(had)} already there")
