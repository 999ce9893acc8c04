"""What ``load`` reads: detection of source kinds and their cutting into parse units.

A source yields *units* (picklable, small) that a parser turns into record batches, in a worker process or inline.
Catalog walking, folder listing and compressed stream reading happen here, in the main process; JSON parsing and
row building happen in the parser, in parallel.
"""

from stacbatch.engine._units import (
    DictsUnit,
    FilesUnit,
    LinesUnit,
    PagesUnit,
    RangeUnit,
    RecordsUnit,
    Unit,
)
from stacbatch.sources._detect import SourcePlan, plan_sources

__all__ = [
    "DictsUnit",
    "FilesUnit",
    "LinesUnit",
    "PagesUnit",
    "RangeUnit",
    "RecordsUnit",
    "SourcePlan",
    "Unit",
    "plan_sources",
]
