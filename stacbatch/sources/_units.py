"""Parse units: the pieces of input a parser handles at once (about ``batch_size`` items each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LinesUnit:
    """NDJSON lines of one file; ``first_line`` is the 1-based line number of ``lines[0]``."""

    source: str
    first_line: int
    lines: list[bytes]


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


Unit = LinesUnit | FilesUnit | DictsUnit
