"""The stage's record of its last validation run: one row per valid object, one per reason an object is invalid.

``stacbatch validate`` writes the table (``runs/<run>/validation.parquet``) and points the manifest at it; the
``validation`` view reads it (``sql/empty_validation.sql`` stands in when the stage was never validated).
"""

from __future__ import annotations

import pyarrow as pa

#: the columns whose few values repeat on every row are dictionary-encoded: a 1M-item run's verdicts take ~80 MB
#: instead of ~210 (SQL reads them as text all the same)
_REPEATED = pa.dictionary(pa.int32(), pa.string())

VERDICT_SCHEMA = pa.schema(
    [
        pa.field("run_id", _REPEATED, nullable=False),
        #: item, collection, catalog, or unknown (not a STAC object)
        pa.field("kind", _REPEATED, nullable=False),
        pa.field("collection", _REPEATED),
        pa.field("id", pa.string()),
        pa.field("valid", pa.bool_(), nullable=False),
        #: what failed: a schema URL or a check's name (null on a valid object's row)
        pa.field("rule", _REPEATED),
        #: where in the object, e.g. properties.eo:bands[0].name ("" for the object itself)
        pa.field("path", pa.string()),
        pa.field("message", pa.string()),
        #: where the object was read: the stage's data file, or the file, folder or URL given
        pa.field("source", _REPEATED),
    ]
)
