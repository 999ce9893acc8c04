"""The stage's record of its last validation run: one row per valid object, one per reason an object is invalid.

``stacbatch validate`` writes the table (``runs/<run>/validation.parquet``) and points the manifest at it; the
``validation`` view reads it (``sql/empty_validation.sql`` stands in when the stage was never validated).
"""

from __future__ import annotations

import pyarrow as pa

VERDICT_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        #: item, collection, catalog, or unknown (not a STAC object)
        pa.field("kind", pa.string(), nullable=False),
        pa.field("collection", pa.string()),
        pa.field("id", pa.string()),
        pa.field("valid", pa.bool_(), nullable=False),
        #: what failed: a schema URL or a check's name (null on a valid object's row)
        pa.field("rule", pa.string()),
        #: where in the object, e.g. properties.eo:bands[0].name ("" for the object itself)
        pa.field("path", pa.string()),
        pa.field("message", pa.string()),
        #: where the object was read: the stage's data file, or the file, folder or URL given
        pa.field("source", pa.string()),
    ]
)
