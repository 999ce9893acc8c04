"""``emit --validate``: validate what an emit would write, then refuse (``fail``), leave the invalid items out
(``skip``) or write everything and report (``warn``). The verdicts are recorded in the stage as any validation
run's are (its ``validation`` view and failures file), so the items left out are listed there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stacbatch.errors import InputError
from stacbatch.stage import open_stage
from stacbatch.validate import Options, ValidationResult, validate

GATES = ("fail", "skip", "warn")
#: items the last validation run found invalid, as keys the emit's predicate can test
_INVALID = "SELECT collection || chr(0) || id FROM validation WHERE NOT valid AND kind = 'item'"


def emit_validated(
    stage_path: str,
    emit: Callable[..., Any],
    *,
    gate: str,
    options: Options,
    collections: list[str] | None = None,
    where: str | None = None,
    **kwargs: Any,
) -> tuple[Any, ValidationResult]:
    """Validate the items (and their collections) an emit selects, then run ``emit(stage, collections=...,
    where=..., **kwargs)`` as ``gate`` says. Returns the emit's result and the validation's."""
    if gate not in GATES:
        raise InputError(f"--validate must be one of {', '.join(GATES)}, got {gate!r}")
    checked = validate(stage_path, options=options, collections=collections, where=where)
    if gate == "fail" and checked.invalid:
        raise InputError(
            f"emit refused: {checked.invalid:,} of {checked.checked:,} objects are invalid (see {checked.failures_file}"
            f" in the stage, or its `validation` view); fix them, or pass --validate skip or --validate warn"
        )
    if gate == "skip" and checked.invalid:
        keep = f"collection || chr(0) || id NOT IN ({_INVALID})"
        where = f"({where}) AND {keep}" if where else keep
    stage = open_stage(stage_path)  # the version the validation committed (with its verdicts)
    return emit(stage, collections=collections, where=where, **kwargs), checked
