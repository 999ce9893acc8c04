"""The stage: lossless, partitioned GeoParquet tables of items plus their collections, manifest and runs."""

from stacbatch.stage._load import DEFAULT_BATCH_SIZE, LoadResult, load
from stacbatch.stage._manifest import Manifest
from stacbatch.stage._stage import Stage, open_stage

__all__ = ["DEFAULT_BATCH_SIZE", "LoadResult", "Manifest", "Stage", "load", "open_stage"]
