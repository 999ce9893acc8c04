"""Emit a stage (or a filtered part of it) as NDJSON, a static STAC JSON tree, or stac-geoparquet."""

from stacbatch.emit._common import EmitResult
from stacbatch.emit._geoparquet import emit_geoparquet
from stacbatch.emit._ndjson import emit_ndjson
from stacbatch.emit._tree import emit_json_tree

__all__ = ["EmitResult", "emit_geoparquet", "emit_json_tree", "emit_ndjson"]
