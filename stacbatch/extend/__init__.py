"""Extensions over whole batches: the interface, the built-ins (alternate-assets), declarative extension files,
``extend``, which applies one to a stage, and ``migrate`` (STAC 1.0.0 items to 1.1.0)."""

from stacbatch.extend._base import ENTRY_POINTS, Extension, Plan, Rule, available, find
from stacbatch.extend._migrate import MigrateResult, migrate
from stacbatch.extend._run import ExtendResult, extend, read_config, stac_extensions_op

__all__ = [
    "ENTRY_POINTS",
    "ExtendResult",
    "Extension",
    "MigrateResult",
    "Plan",
    "Rule",
    "available",
    "extend",
    "find",
    "migrate",
    "read_config",
    "stac_extensions_op",
]
