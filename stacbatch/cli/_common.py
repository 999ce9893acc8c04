"""Shared CLI state and options."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import typer

from stacbatch.engine._progress import current
from stacbatch.errors import ExitCode, InputError


@dataclass
class _State:
    verbose: int = 0
    quiet: bool = False
    exit_code: ExitCode = ExitCode.OK


state = _State()


def info(msg: str) -> None:
    """A summary or note on stderr (not under ``-q``); progress bars, if any, are removed first."""
    current().finish()
    if not state.quiet:
        print(msg, file=sys.stderr)


def stage_option() -> str:
    return typer.Option(  # type: ignore[no-any-return]
        None,
        "--stage",
        "-s",
        envvar="STACBATCH_STAGE",
        help="Stage folder (default: $STACBATCH_STAGE).",
    )


def require_stage(stage: str | None) -> str:
    if not stage:
        raise InputError("no stage given: pass --stage DIR or set STACBATCH_STAGE")
    return stage
