"""The stage: lossless, partitioned GeoParquet tables of items plus their collections, manifest and runs.

The names below are the stage's seam for the layers above it (edit, emit, mapping, workflow, cli): they import
from here, not from the private modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stacbatch.engine._lazy import lazy

if TYPE_CHECKING:
    from stacbatch.stage._audit import audit_table
    from stacbatch.stage._catalogs import catalog_doc, read_members
    from stacbatch.stage._commit import commit, crash_point
    from stacbatch.stage._files import sort_for_stage, stage_columns, write_stage_file
    from stacbatch.stage._info import stage_info
    from stacbatch.stage._load import DEFAULT_BATCH_SIZE, LoadResult, adopt_schemes, load, stage_collection, stage_tmp
    from stacbatch.stage._manifest import Manifest
    from stacbatch.stage._pages import take_rows
    from stacbatch.stage._plans import plans_of
    from stacbatch.stage._queryables import queryables, queryables_schema, read_declared
    from stacbatch.stage._route import bucket_column
    from stacbatch.stage._runs import Run, format_failure
    from stacbatch.stage._select import bounded_memory, lookup_parts, query_rows, read_ids, select_rows, selection
    from stacbatch.stage._stage import Stage, open_stage
    from stacbatch.stage._upgrade import has_asset_fields, upgrade
    from stacbatch.stage._view import from_text, items_select, property_columns
    from stacbatch.stage._writer import PartitionWriter

# Imported on first use (PEP 562): parse workers unpickle the stage writer's router from this package and must
# not pay for DuckDB, which only the loading process uses.
_LAZY: dict[str, str | tuple[str, str]] = {
    "adopt_schemes": "stacbatch.stage._load",
    "audit_table": "stacbatch.stage._audit",
    "bucket_column": "stacbatch.stage._route",
    "catalog_doc": "stacbatch.stage._catalogs",
    "commit": "stacbatch.stage._commit",
    "crash_point": "stacbatch.stage._commit",
    "DEFAULT_BATCH_SIZE": "stacbatch.stage._load",
    "format_failure": "stacbatch.stage._runs",
    "from_text": "stacbatch.stage._view",
    "items_select": "stacbatch.stage._view",
    "load": "stacbatch.stage._load",
    "LoadResult": "stacbatch.stage._load",
    "Manifest": "stacbatch.stage._manifest",
    "open_stage": "stacbatch.stage._stage",
    "PartitionWriter": "stacbatch.stage._writer",
    "plans_of": "stacbatch.stage._plans",
    "property_columns": "stacbatch.stage._view",
    "queryables": "stacbatch.stage._queryables",
    "queryables_schema": "stacbatch.stage._queryables",
    "read_declared": "stacbatch.stage._queryables",
    "read_members": "stacbatch.stage._catalogs",
    "read_ids": "stacbatch.stage._select",
    "Run": "stacbatch.stage._runs",
    "select_rows": "stacbatch.stage._select",
    "lookup_parts": "stacbatch.stage._select",
    "bounded_memory": "stacbatch.stage._select",
    "query_rows": "stacbatch.stage._select",
    "selection": "stacbatch.stage._select",
    "sort_for_stage": "stacbatch.stage._files",
    "Stage": "stacbatch.stage._stage",
    "stage_collection": "stacbatch.stage._load",
    "stage_columns": "stacbatch.stage._files",
    "stage_info": "stacbatch.stage._info",
    "stage_tmp": "stacbatch.stage._load",
    "take_rows": "stacbatch.stage._pages",
    "upgrade": "stacbatch.stage._upgrade",
    "has_asset_fields": "stacbatch.stage._upgrade",
    "write_stage_file": "stacbatch.stage._files",
}


__getattr__, __dir__ = lazy(__name__, _LAZY)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "LoadResult",
    "Manifest",
    "PartitionWriter",
    "Run",
    "Stage",
    "adopt_schemes",
    "audit_table",
    "bounded_memory",
    "bucket_column",
    "catalog_doc",
    "commit",
    "crash_point",
    "format_failure",
    "from_text",
    "has_asset_fields",
    "items_select",
    "load",
    "lookup_parts",
    "open_stage",
    "plans_of",
    "property_columns",
    "query_rows",
    "queryables",
    "queryables_schema",
    "read_declared",
    "read_ids",
    "read_members",
    "select_rows",
    "selection",
    "sort_for_stage",
    "stage_collection",
    "stage_columns",
    "stage_info",
    "stage_tmp",
    "take_rows",
    "upgrade",
    "write_stage_file",
]
