"""stacbatch: build, manage and extend STAC catalogs at scale.

Public API::

    import stacbatch
    result = stacbatch.load_to_stage("stage", ["items.ndjson"])
    stage = stacbatch.open_stage("stage")
    stage.items              # DuckDB relation; .to_arrow_table(), .pl()
    stacbatch.emit_ndjson(stage, "out/")
"""

from stacbatch._rows import DEFAULT_COLLECTION
from stacbatch.emit import EmitResult, emit_geoparquet, emit_json_tree, emit_ndjson
from stacbatch.errors import ExitCode, InputError, QueryError, StacbatchError, StageError
from stacbatch.stage import LoadResult, Stage, open_stage
from stacbatch.stage import load as load_to_stage

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_COLLECTION",
    "EmitResult",
    "ExitCode",
    "InputError",
    "LoadResult",
    "QueryError",
    "StacbatchError",
    "Stage",
    "StageError",
    "__version__",
    "emit_geoparquet",
    "emit_json_tree",
    "emit_ndjson",
    "load_to_stage",
    "open_stage",
]
