from __future__ import annotations

import os
import sys
import tempfile

import orjson
import typer

from stacbatch.cli._common import info
from stacbatch.cli._source_opts import HTTP_ONLY, SourceArgs, with_source_options
from stacbatch.cli._table import render
from stacbatch.errors import InputError


@with_source_options(only=HTTP_ONLY)
def discover_cmd(
    url: str = typer.Argument(..., help="STAC API landing page (or a CMR-STAC root such as .../stac)."),
    collection: list[str] = typer.Option([], "--collection", "-c", help="Collection id patterns (globs; repeatable)."),
    provider: list[str] = typer.Option([], "--provider", "-p", help="Provider names under a CMR-STAC root (globs)."),
    datetime_: str | None = typer.Option(None, "--datetime", help="Keep collections whose time extent overlaps."),
    bbox: str | None = typer.Option(
        None, "--bbox", help="Keep collections whose extent intersects west,south,east,north."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json | ndjson"),
    stage: str | None = typer.Option(None, "--stage", "-s", help="Also store the chosen collections in this stage."),
    *,
    source: SourceArgs,
) -> None:
    from stacbatch.api import check_datetime, parse_bbox
    from stacbatch.api._discover import discover
    from stacbatch.engine._headers import HeaderScope

    if fmt not in ("table", "json", "ndjson"):
        raise InputError(f"--format must be table, json or ndjson, got {fmt!r}")
    found = discover(
        url,
        patterns=collection,
        providers=provider,
        datetime=check_datetime(datetime_) if datetime_ else None,
        bbox=parse_bbox(bbox) if bbox else None,
        http_options={**source.http_options(), "header_scope": HeaderScope.of(url, source.header_host)},
    )
    if fmt == "json":
        sys.stdout.write(orjson.dumps([c for _p, c in found], option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "ndjson":
        sys.stdout.write("".join(orjson.dumps(c).decode() + "\n" for _p, c in found))
    else:
        rows = []
        for p, c in found:
            span = (((c.get("extent") or {}).get("temporal") or {}).get("interval") or [[None, None]])[0]
            rows.append([p, str(c.get("id")), str(c.get("title") or "")[:50], f"{span[0] or '..'} / {span[1] or '..'}"])
        sys.stdout.write(render(["provider", "id", "title", "temporal extent"], rows))
    info(f"discover: {len(found)} collection(s)")
    if stage and found:
        from stacbatch.stage import load

        with tempfile.TemporaryDirectory(prefix="stacbatch-discover-") as tmp:
            for n, (_p, c) in enumerate(found):
                with open(os.path.join(tmp, f"{n:06d}.json"), "wb") as f:
                    f.write(orjson.dumps(c))
            res = load(stage, [tmp])
        info(f"discover: {res.collections_staged} collection(s) stored in {stage} (v{res.stage_version})")
