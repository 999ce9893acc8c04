from __future__ import annotations

import sys

import orjson
import typer

from stacbatch.cli._common import require_stage, stage_option
from stacbatch.cli._table import render as render_table
from stacbatch.errors import InputError
from stacbatch.stage import open_stage, stage_info


def info_cmd(
    stage: str | None = stage_option(),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    properties: bool = typer.Option(
        True,
        "--properties/--no-properties",
        help="List property keys per collection (reads every item).",
    ),
) -> None:
    if fmt not in ("table", "json"):
        raise InputError(f"--format must be table or json, got {fmt!r}")
    st = open_stage(require_stage(stage))
    report = stage_info(st, properties=properties)
    from stacbatch.stage import queryables

    found = queryables(st)
    for entry in report["collections"]:
        if entry["id"] in found:
            entry["queryables"] = found[entry["id"]]
    if fmt == "json":
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    sys.stdout.write(render(report))


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


#: catalog tree lines ``info`` shows at most (a tree of year/month catalogs can be long)
TREE_LINES = 40


def _tree_lines(nodes: list[dict], indent: str) -> list[str]:  # type: ignore[type-arg]
    out: list[str] = []
    stack = [(n, indent) for n in reversed(nodes)]
    while stack:
        node, pad = stack.pop()
        if len(out) == TREE_LINES:
            out.append(f"{indent}...")
            break
        out.append(f"{pad}{node['id']}" + ("  (collection)" if node["type"] == "Collection" else ""))
        stack += [(c, pad + "  ") for c in reversed(node["children"])]
    return out


#: property columns ``info`` lists per collection at most (``info -f json`` and ``queryables`` give all)
QUERYABLE_LINES = 30


def _asset_line(q: dict) -> str:  # type: ignore[type-arg]
    a = q.get("asset_fields") or {}
    if a.get("files_without"):
        return (
            f"  assets      {a['files_without']:,} file(s) written before asset_fields: read from the text "
            "(run `stacbatch upgrade` to add the column)"
        )
    rate = a.get("items", 0) / q["items"] if q["items"] else 0.0
    odd = ", ".join(f"{n:,} {k} of another type" for k, n in sorted((a.get("not_of_type") or {}).items()))
    return f"  assets      asset_fields (href, type, roles) {rate:.1%} of items" + (f"; {odd}" if odd else "")


def _queryable_lines(q: dict) -> list[str]:  # type: ignore[type-arg]
    return [*_property_lines(q), _asset_line(q)]


def _property_lines(q: dict) -> list[str]:  # type: ignore[type-arg]
    if q.get("legacy"):
        return ["  columns     none: written before property columns (run `stacbatch upgrade` to add them)"]
    lines = [f"  columns     {len(q['columns'])} typed (fill rate; values of another type stay in the text):"]
    if q["closed"]:
        lines[0] = (
            f"  columns     {len(q['columns'])} typed, read from the item texts: more names are kept in the text "
            "than a plan lists, so any may be in any file"
        )
    rows = []
    for name, col in list(q["columns"].items())[:QUERYABLE_LINES]:
        rate = col["items"] / q["items"] if q["items"] else 0.0
        odd = f", {col['not_of_type']:,} of another type" if col.get("not_of_type") else ""
        shown = f" as {col['shown_as']!r}" if col.get("shown_as") else ""
        rows.append([name, col["type"], f"{rate:.1%}", f"{odd}{shown}".lstrip(", ")])
    if rows:  # as wide as the longest name and type (struct types are long), no header
        table = render_table(["", "", "", ""], rows, right=(2,)).splitlines()[1:]
        lines += ["    " + line for line in table]
    if len(q["columns"]) > QUERYABLE_LINES:
        lines.append(f"    ... {len(q['columns']) - QUERYABLE_LINES} more (stacbatch queryables -c COLLECTION)")
    for name, why in list(q["text_only"].items())[:QUERYABLE_LINES]:
        lines.append(f"    {name:<28} text only: {why}")
    if len(q["text_only"]) > QUERYABLE_LINES:
        lines.append(f"    ... {len(q['text_only']) - QUERYABLE_LINES} more kept in the text only (info -f json)")
    return lines


def queryables_cmd(
    stage: str | None = stage_option(),
    collection: str | None = typer.Option(None, "--collection", "-c", help="One collection's queryables."),
    base_url: str | None = typer.Option(
        None, "--base-url", help="URL the schema's $id starts with (the STAC API serving the stage)."
    ),
) -> None:
    from stacbatch.stage import queryables_schema

    st = open_stage(require_stage(stage))
    doc = queryables_schema(st, collection, base_url)
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


def render(report: dict) -> str:  # type: ignore[type-arg]
    lines = [
        f"stage {report['path']}  (format v{report['format_version']}, version {report['version']}, "
        f"updated {report['updated']})",
        f"{report['items']:,} items in {len(report['collections'])} collection(s), {report['files']} file(s), "
        f"{_size(report['bytes'])}",
    ]
    if report.get("last_run"):
        lr = report["last_run"]
        lines.append(f"last run: {lr.get('run_id')} {lr.get('command')} ({lr.get('status')})")
    if report.get("catalogs"):
        lines += ["", "static catalog tree (emit --format json rebuilds it):"]
        lines += _tree_lines(report["catalogs"], "  ")
    for c in report["collections"]:
        lines.append("")
        flag = "" if c["has_collection_json"] else "  (no Collection JSON staged)"
        lines.append(f"{c['id']}{flag}")
        lines.append(f"  items       {c['items']:,}")
        lines.append(f"  time range  {c['datetime_min'] or '-'} .. {c['datetime_max'] or '-'}")
        bbox = c["bbox"]
        lines.append("  bbox        " + (", ".join(f"{v:.6g}" for v in bbox) if bbox else "-"))
        lines.append(
            f"  partitions  {len(c['partitions'])} ({c['partitioning']}): "
            + ", ".join(c["partitions"][:6])
            + (" ..." if len(c["partitions"]) > 6 else "")
        )
        lines.append(f"  files       {c['files']} ({_size(c['bytes'])})")
        if "queryables" in c:
            lines += _queryable_lines(c["queryables"])
        if "properties" in c:
            props = ", ".join(f"{k} ({n:,})" if n != c["items"] else k for k, n in c["properties"].items())
            lines.append(f"  properties  {props or '-'}")
    return "\n".join(lines) + "\n"


def upgrade_cmd(
    stage: str | None = stage_option(),
    workers: int | None = typer.Option(None, "--workers", help="Processes rewriting files (default: one per core)."),
) -> None:
    from stacbatch.cli._common import info
    from stacbatch.stage import upgrade

    res = upgrade(require_stage(stage), workers)
    if not res.collections:
        info("nothing to upgrade: every file has its property and asset_fields columns")
        return
    info(
        f"upgraded {len(res.collections):,} collection(s): {res.items:,} items rewritten into {res.files:,} file(s) "
        f"with property and asset_fields columns in {res.seconds:.1f} s (stage version {res.stage_version})"
    )
