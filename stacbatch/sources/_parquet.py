"""stac-geoparquet files as a source, read row group by row group."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stacbatch.engine._units import DictsUnit, Unit

if TYPE_CHECKING:
    from stacbatch.sources._detect import SourcePlan


def parquet_units(fs: Any, path: str, label: str, plan: SourcePlan) -> Iterator[Unit]:
    from stac_geoparquet.arrow import stac_table_to_items

    try:
        pf = pq.ParquetFile(fs.open(path, "rb"))
    except (OSError, pa.ArrowInvalid) as err:
        plan.problems.append((label, "", f"not a readable Parquet file: {err}"))
        return
    row = 0
    for batch in pf.iter_batches(batch_size=plan.batch_size):
        table = pa.Table.from_batches([batch])
        try:
            items = list(stac_table_to_items(table))
        except Exception as err:  # stac-geoparquet raises many kinds; report, keep going
            plan.problems.append((label, f"rows {row}-{row + batch.num_rows - 1}", f"not stac-geoparquet: {err}"))
            row += batch.num_rows
            continue
        labels = [f"{label}#row{row + i}" for i in range(len(items))]
        row += batch.num_rows
        yield DictsUnit(label, labels, items, check_finite=_has_non_finite(batch))


def _has_non_finite(data: pa.Array | pa.RecordBatch) -> bool:
    """Whether any floating-point value, at any depth, is NaN or infinite (one vectorised pass per column)."""
    if isinstance(data, pa.RecordBatch):
        return any(_has_non_finite(col) for col in data.columns)
    t = data.type
    if pa.types.is_floating(t):
        return bool(pc.any(pc.invert(pc.is_finite(data))).as_py())
    if pa.types.is_struct(t):
        return any(_has_non_finite(data.field(i)) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _has_non_finite(data.flatten())
    if pa.types.is_map(t):
        return _has_non_finite(data.items)
    return False
