"""Validation of STAC objects: the schemas stac-validator would choose (jsonschema-rs, offline from schema folders
and a cache), named checks where the schemas are silent, verdicts as data (the stage's ``validation`` view)."""

from stacbatch.validate._check import Options
from stacbatch.validate._checks import CHECKS, DEFAULT_CHECKS, parse_checks
from stacbatch.validate._run import ValidationResult, failure_records, validate
from stacbatch.validate._schemas import SchemaSource, SchemaStore, default_cache

__all__ = [
    "CHECKS",
    "DEFAULT_CHECKS",
    "Options",
    "SchemaSource",
    "SchemaStore",
    "ValidationResult",
    "default_cache",
    "failure_records",
    "parse_checks",
    "validate",
]
