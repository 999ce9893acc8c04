"""Batch edits on a stage: update, delete, diff and merge, each one atomic commit with an audit trail."""

from stacbatch.edit._apply import EditResult, delete, update
from stacbatch.edit._ops import Op, parse_cli_ops, parse_ops_document

__all__ = ["EditResult", "Op", "delete", "parse_cli_ops", "parse_ops_document", "update"]
