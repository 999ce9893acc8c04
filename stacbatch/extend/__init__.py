"""Extensions over whole batches: the interface, the built-ins (alternate-assets), declarative extension files,
and ``extend``, which applies one to a stage."""

from stacbatch.extend._base import ENTRY_POINTS, Extension, Plan, Rule, available, find
from stacbatch.extend._run import ExtendResult, extend, read_config, stac_extensions_op

__all__ = [
    "ENTRY_POINTS",
    "ExtendResult",
    "Extension",
    "Plan",
    "Rule",
    "available",
    "extend",
    "find",
    "read_config",
    "stac_extensions_op",
]
