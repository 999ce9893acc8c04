"""The stage: lossless, partitioned GeoParquet tables of items plus their collections, manifest and runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stacbatch._lazy import lazy

if TYPE_CHECKING:
    from stacbatch.stage._load import DEFAULT_BATCH_SIZE, LoadResult, load
    from stacbatch.stage._manifest import Manifest
    from stacbatch.stage._stage import Stage, open_stage

# Imported on first use (PEP 562): parse workers unpickle the stage writer's router from this package and must
# not pay for DuckDB, which only the loading process uses.
_LAZY: dict[str, str | tuple[str, str]] = {
    "DEFAULT_BATCH_SIZE": "stacbatch.stage._load",
    "LoadResult": "stacbatch.stage._load",
    "load": "stacbatch.stage._load",
    "Manifest": "stacbatch.stage._manifest",
    "Stage": "stacbatch.stage._stage",
    "open_stage": "stacbatch.stage._stage",
}


__getattr__, __dir__ = lazy(__name__, _LAZY)

__all__ = ["DEFAULT_BATCH_SIZE", "LoadResult", "Manifest", "Stage", "load", "open_stage"]
