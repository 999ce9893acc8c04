"""Parse units: the pieces of input a parser handles at once (about ``batch_size`` items each)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stacbatch.engine import _handoff


@dataclass(frozen=True, slots=True)
class LinesUnit:
    """Whole NDJSON lines of one file as one bytes block (one object pickles ~10x faster than a list of lines);
    ``first_line`` is the 1-based line number of the block's first line."""

    source: str
    first_line: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RangeUnit:
    """Whole NDJSON lines of a local uncompressed file, by byte range: the worker reads them itself, so nothing
    but this small tuple crosses the process boundary. Line numbers in its results are relative to the range;
    the loader, which sees results in order, makes them absolute."""

    source: str
    path: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class FilesUnit:
    """JSON files each holding an item, a FeatureCollection or an array of items."""

    paths: list[str]


@dataclass(frozen=True, slots=True)
class DictsUnit:
    """Items already decoded (stac-geoparquet rows, members of a large JSON document); ``labels[i]`` locates item i."""

    source: str
    labels: list[str]
    items: list[Any]
    #: the items may hold NaN or infinite floats (orjson would write them as null): look for them item by item
    check_finite: bool = False


@dataclass(frozen=True, slots=True)
class PagesUnit:
    """STAC API pages: (label, features, indices of the features to take or None for all). For worker processes the
    features are the page as the server sent it (bytes cross a process boundary far cheaper than decoded dicts;
    the worker decodes them again), inline they are the decoded list."""

    source: str
    pages: list[tuple[str, bytes | list[Any], tuple[int, ...] | None]]
    #: collections whose every query ended with these pages: none of their items comes after this unit
    done: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordsUnit:
    """A batch of source records (a pyarrow Table) for a mapping (its parsed document and the source's columns):
    the worker that takes it calls ``run`` on it (``stacbatch.mapping.map_records``: a module-level function, so
    it pickles by name and the worker imports the mapping layer only when it meets such a unit)."""

    source: str
    first_row: int
    records: Any
    doc: Any
    columns: dict[str, str]
    #: source rows that could not be read as records (failures as the run records them)
    rejected: tuple[dict[str, Any], ...] = ()
    #: the record number of each row, when they do not simply count up from ``first_row`` (unreadable records
    #: were taken out)
    rows: Any = None
    #: maps the unit: ``run(unit)`` -> an object with ``stats``, ``columns`` (a record batch or None), ``failures``
    run: Callable[[Any], Any] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # to a worker process, the records go through a memory-mapped file, not the pool's pipe (see _handoff)
        fields = (self.source, self.first_row, _handoff.dump(self.records), self.doc, self.columns)
        return (_records_unit, (*fields, self.rejected, self.rows, self.run))


def _records_unit(
    source: str,
    first_row: int,
    records: Any,
    doc: Any,
    columns: dict[str, str],
    rejected: Any,
    rows: Any,
    run: Callable[[Any], Any] | None,
) -> RecordsUnit:
    return RecordsUnit(source, first_row, _handoff.load(records), doc, columns, rejected, rows, run)


Unit = LinesUnit | RangeUnit | FilesUnit | DictsUnit | PagesUnit | RecordsUnit
