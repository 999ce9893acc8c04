"""stacbatch: build, manage and extend STAC catalogs at scale.

Public API::

    import stacbatch
    result = stacbatch.load_to_stage("stage", ["items.ndjson"])
    stage = stacbatch.open_stage("stage")
    stage.items              # DuckDB relation; .to_arrow_table(), .pl()
    stacbatch.emit_ndjson(stage, "out/")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stacbatch.engine._lazy import lazy
from stacbatch.engine._version import VERSION

if TYPE_CHECKING:
    from stacbatch.emit import EmitResult, emit_geoparquet, emit_json_tree, emit_ndjson
    from stacbatch.engine._progress import Progress, reporting
    from stacbatch.errors import ExitCode, InputError, QueryError, StacbatchError, StageError
    from stacbatch.kernel._rows import DEFAULT_COLLECTION
    from stacbatch.stage import LoadResult, Stage, open_stage
    from stacbatch.workflow import load as load_to_stage

__version__ = VERSION

# Imported on first use (PEP 562): parse workers and quick commands do not pay for DuckDB, PySTAC and
# stac-geoparquet when they do not need them.
_LAZY: dict[str, str | tuple[str, str]] = {
    "DEFAULT_COLLECTION": ("stacbatch.kernel._rows", "DEFAULT_COLLECTION"),
    "EmitResult": ("stacbatch.emit", "EmitResult"),
    "emit_geoparquet": ("stacbatch.emit", "emit_geoparquet"),
    "emit_json_tree": ("stacbatch.emit", "emit_json_tree"),
    "emit_ndjson": ("stacbatch.emit", "emit_ndjson"),
    "ExitCode": ("stacbatch.errors", "ExitCode"),
    "InputError": ("stacbatch.errors", "InputError"),
    "QueryError": ("stacbatch.errors", "QueryError"),
    "StacbatchError": ("stacbatch.errors", "StacbatchError"),
    "StageError": ("stacbatch.errors", "StageError"),
    "LoadResult": ("stacbatch.stage", "LoadResult"),
    "Progress": ("stacbatch.engine._progress", "Progress"),
    "reporting": ("stacbatch.engine._progress", "reporting"),
    "Stage": ("stacbatch.stage", "Stage"),
    "open_stage": ("stacbatch.stage", "open_stage"),
    "load_to_stage": ("stacbatch.workflow", "load"),
}


__getattr__, __dir__ = lazy(__name__, _LAZY)

__all__ = [
    "DEFAULT_COLLECTION",
    "EmitResult",
    "ExitCode",
    "InputError",
    "LoadResult",
    "Progress",
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
    "reporting",
]
