"""Declarative mappings: tabular records (CSV, JSON, NDJSON, Parquet, GeoParquet) to STAC items, compiled to one
DuckDB SELECT run over whole batches. The language is documented in the README and by ``mapping.schema.json``."""

from stacbatch.mapping._compile import Compiled, compile_mapping
from stacbatch.mapping._doc import MappingError, mapping_schema, read_mapping
from stacbatch.mapping._read import source_sql
from stacbatch.mapping._run import MappingRun
from stacbatch.mapping._source import MappedSource

__all__ = [
    "Compiled",
    "MappedSource",
    "MappingError",
    "MappingRun",
    "compile_mapping",
    "mapping_schema",
    "read_mapping",
    "source_sql",
]
