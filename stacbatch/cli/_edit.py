from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer

from stacbatch.cli._common import info, require_stage, stage_option, state
from stacbatch.errors import ExitCode, InputError
from stacbatch.stage import format_failure

if TYPE_CHECKING:
    from stacbatch.edit import EditResult

WHERE_HELP = (
    "SQL predicate over the item's columns and fields, e.g. "
    '"collection = \'HLSL30_2.0\' AND properties.\\"eo:cloud_cover\\" > 90".'
)
IDS_HELP = "File of ids: text (one per line), NDJSON, CSV or Parquet with id (and optionally collection)."
CREATE_PARENTS_HELP = (
    "Create missing parent objects of a --set or --rename target (default: items without them are skipped for "
    "that path, and counted)."
)


def read_document(path: str) -> Any:
    """A YAML or JSON file, with one clear line when it does not parse."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such file")
    text = p.read_text(encoding="utf-8")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise InputError(f"{path}{where}: not valid YAML/JSON: {problem}") from None


def update_cmd(
    stage: str | None = stage_option(),
    where: str | None = typer.Option(None, "--where", "-w", help=WHERE_HELP),
    ids: str | None = typer.Option(None, "--ids", help=IDS_HELP),
    sets: list[str] = typer.Option([], "--set", help="PATH=SQL, e.g. properties.platform='landsat-8' (repeatable)."),
    unsets: list[str] = typer.Option([], "--unset", help="PATH to remove (repeatable)."),
    renames: list[str] = typer.Option([], "--rename", help="OLD=NEW path (repeatable)."),
    file: str | None = typer.Option(None, "--file", "-f", help="YAML/JSON update file (operations, where, ids)."),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show what would change; write nothing."),
    ignore_unknown_ids: bool = typer.Option(False, "--ignore-unknown-ids", help="Report unknown ids, go on."),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: one per core)."),
    create_parents: bool = typer.Option(False, "--create-parents", help=CREATE_PARENTS_HELP),
) -> None:
    from stacbatch.edit import parse_cli_ops, parse_ops_document, update

    path = require_stage(stage)
    ops = parse_cli_ops(sets, unsets, renames)
    if file:
        doc_ops, doc_where, doc_ids = parse_ops_document(read_document(file), file)
        ops += doc_ops
        where = f"({doc_where}) AND ({where})" if doc_where and where else where or doc_where
        ids = ids or (str(Path(file).parent / doc_ids) if doc_ids else None)
    res = update(
        path,
        ops,
        where=where,
        ids_file=ids,
        dry_run=dry_run,
        ignore_unknown_ids=ignore_unknown_ids,
        workers=workers,
        create_parents=create_parents,
    )
    report(res)


def delete_cmd(
    stage: str | None = stage_option(),
    where: str | None = typer.Option(None, "--where", "-w", help=WHERE_HELP),
    ids: str | None = typer.Option(None, "--ids", help=IDS_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show what would be deleted; write nothing."),
    ignore_unknown_ids: bool = typer.Option(False, "--ignore-unknown-ids", help="Report unknown ids, go on."),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes (default: one per core)."),
) -> None:
    from stacbatch.edit import delete

    res = delete(
        require_stage(stage),
        where=where,
        ids_file=ids,
        dry_run=dry_run,
        ignore_unknown_ids=ignore_unknown_ids,
        workers=workers,
    )
    report(res)


def report(res: EditResult) -> None:
    verb = "deleted" if res.command == "delete" else "updated"
    if res.unknown_ids:
        shown = ", ".join(repr(i) for i in res.unknown_ids[:5])
        print(f"stacbatch: {len(res.unknown_ids):,} id(s) not staged (ignored): {shown}", file=sys.stderr)
    _report_skipped(res)
    if res.dry_run:
        out = sys.stdout
        out.write(
            f"dry run: {res.selected:,} item(s) selected, {res.changed:,} would be {verb}, "
            f"{res.unchanged:,} unchanged, {res.files_rewritten:,} file(s) rewritten; nothing written\n"
        )
        for c, n in sorted(res.per_collection.items()):
            out.write(f"  {c}: {n:,}\n")
        for s in res.samples:
            out.write(f"  {s['collection']}/{s['id']}\n")
            for p, (before, after) in s.get("changes", {}).items():
                out.write(f"    {p}: {_show(before)} -> {_show(after)}\n")
        return
    same = f"{res.unchanged:,} unchanged (content already as asked), " if res.command != "delete" else ""
    info(
        f"{res.command} {res.run_id}: {res.selected:,} selected, {res.changed:,} {verb}, {same}"
        f"{res.files_rewritten:,} file(s) rewritten; {res.seconds:.1f} s; stage v{res.stage_version}"
    )
    for c, n in sorted(res.per_collection.items()):
        info(f"  {c}: {n:,} {verb}")
    if res.failed:
        for rec in res.first_failures:
            print(f"stacbatch: failed: {format_failure(rec)}", file=sys.stderr)
        print(
            f"stacbatch: {res.failed:,} item(s) failed and were left as they were; see {res.failures_file}",
            file=sys.stderr,
        )
        state.exit_code = ExitCode.PARTIAL


def _report_skipped(res: EditResult) -> None:
    """One line per target path that some selected items did not get, for want of its parent object."""
    from stacbatch.edit._paths import parse_path
    from stacbatch.engine._patch import format_path

    for path, n in sorted(res.skipped.items()):
        parent = format_path(parse_path(path)[:-1])
        print(
            f"stacbatch: {path}: {n:,} item(s) skipped: they have no {parent} object "
            "(pass --create-parents to create it)",
            file=sys.stderr,
        )


def _show(value: Any) -> str:
    if value == "<absent>":
        return "(absent)"
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


#: what a Collection file must be for --from (the rest is for `stacbatch validate`)
_COLLECTION_FILE = {
    "type": "object",
    "required": ["type", "id"],
    "properties": {"type": {"const": "Collection"}, "id": {"type": "string", "minLength": 1}},
}


def _collection_file(path: str) -> dict[str, Any]:
    """A Collection from a JSON or YAML file (``FILE:LINE: key: problem`` when it is not one)."""
    from stacbatch.mapping import read_mapping

    data = read_mapping(path, _COLLECTION_FILE).data
    return data if isinstance(data, dict) else {}


def update_collection_cmd(
    collection: str = typer.Argument(..., help="Collection id in the stage."),
    stage: str | None = stage_option(),
    sets: list[str] = typer.Option([], "--set", help="PATH=SQL value, e.g. title='HLS Landsat' (repeatable)."),
    unsets: list[str] = typer.Option([], "--unset", help="PATH to remove (repeatable)."),
    renames: list[str] = typer.Option([], "--rename", help="OLD=NEW path (repeatable)."),
    extent: bool = typer.Option(False, "--extent-from-items", help="Recompute the extent (as --recompute extent)."),
    recompute: str | None = typer.Option(
        None, "--recompute", help="From the staged items, comma-separated: extent, summaries, item_assets."
    ),
    summary: list[str] = typer.Option(
        [], "--summary", help="Property --recompute summaries summarises (repeatable; default: the common ones)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="Show what would change; write nothing."),
    from_file: str | None = typer.Option(
        None,
        "--from",
        help="The Collection as a JSON/YAML file: replaces the staged one, or creates it (no items yet).",
    ),
) -> None:
    from stacbatch.edit import parse_cli_ops
    from stacbatch.edit._collections import SUMMARY_DEFAULTS, update_collection

    wanted = {w.strip() for w in (recompute or "").split(",") if w.strip()}
    unknown = wanted - {"extent", "summaries", "item_assets"}
    if unknown:
        raise InputError(f"--recompute: unknown {', '.join(sorted(unknown))}; give extent, summaries, item_assets")
    ops = parse_cli_ops(sets, unsets, renames)
    res = update_collection(
        require_stage(stage),
        collection,
        ops,
        extent=extent or "extent" in wanted,
        summaries=list(summary or SUMMARY_DEFAULTS) if "summaries" in wanted else None,
        item_assets="item_assets" in wanted,
        dry_run=dry_run,
        document=_collection_file(from_file) if from_file else None,
    )
    if dry_run or not res.run_id:
        out = sys.stdout if dry_run else sys.stderr
        head = "dry run: " if dry_run else "update-collection: "
        out.write(
            f"{head}{collection}: {len(res.changed)} path(s) would change\n"
            if dry_run
            else f"{head}{collection}: nothing changed; nothing written\n"
        )
        for p in res.changed:
            out.write(f"  {p}\n")
        return
    info(
        f"update-collection {res.run_id}: {collection}: {', '.join(res.changed) or 'no path'} changed; "
        f"stage v{res.stage_version}"
    )
