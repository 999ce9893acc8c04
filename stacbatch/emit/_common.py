"""Selection of items to emit (collections, SQL predicate) shared by every output format."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from stacbatch.engine import _sql
from stacbatch.engine._progress import current
from stacbatch.errors import InputError, QueryError
from stacbatch.stage import Stage


@dataclass
class EmitResult:
    items: int = 0
    collections: int = 0
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0


def selected_collections(stage: Stage, collections: list[str] | None) -> list[str]:
    known = sorted({f["collection"] for f in stage.manifest.files} | set(stage.manifest.collections))
    if not collections:
        return known
    unknown = [c for c in collections if c not in known]
    if unknown:
        raise InputError(
            f"--collection {', '.join(unknown)}: not in the stage (it has: {', '.join(known[:10]) or 'none'}"
            f"{', ...' if len(known) > 10 else ''})"
        )
    return collections


def check_where(stage: Stage, where: str | None) -> None:
    """Fail early, with DuckDB's own message on one line, when the predicate does not bind."""
    if where is None:
        return
    try:
        stage.connection.execute(f"SELECT count(*) FROM (SELECT * FROM items LIMIT 0) WHERE ({where})")
    except duckdb.Error as err:
        raise QueryError(f"--where {where!r}: {_sql.one_line(err)}") from None


def iter_items(stage: Stage, collection: str, where: str | None, rows: int = 20_000) -> Iterator[pa.RecordBatch]:
    """Record batches of one collection's items in stage order (only that collection's files are read)."""
    view = stage.items_view([collection])
    query = f"SELECT item FROM {view}"
    if where:
        query += f" WHERE ({where})"
    try:
        reader = stage.connection.sql(query).to_arrow_reader(rows)
    except duckdb.Error as err:
        raise QueryError(f"--where {where!r}: {_sql.one_line(err)}") from None
    yield from counted(reader)


def begin_progress(stage: Stage, chosen: list[str], where: str | None, name: str) -> None:
    """Start the emit's progress phase; its total is the items of the chosen collections (unknown with a filter)."""
    total = None if where else sum(stage.manifest.item_count(c) for c in chosen)
    current().phase(name, total=total)


def counted(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches, each counted in the current progress as it is handed on."""
    progress = current()
    for batch in batches:
        yield batch
        progress.advance(batch.num_rows)
