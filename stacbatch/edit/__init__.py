"""Batch edits on a stage: update, delete, diff and merge, each one atomic commit with an audit trail."""

from stacbatch.edit._apply import EditResult, Lookup, delete, update
from stacbatch.edit._collections import CollectionUpdate, update_collection
from stacbatch.edit._diff import DiffResult, diff
from stacbatch.edit._merge import MergeResult, merge
from stacbatch.edit._ops import Op, compile_where, parse_cli_ops, parse_ops_document

__all__ = [
    "CollectionUpdate",
    "DiffResult",
    "EditResult",
    "Lookup",
    "MergeResult",
    "Op",
    "compile_where",
    "delete",
    "diff",
    "merge",
    "parse_cli_ops",
    "parse_ops_document",
    "update",
    "update_collection",
]
