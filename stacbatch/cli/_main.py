"""Entry point: one place turns errors into one line and an exit code (never a traceback, unless ``-v``)."""

from __future__ import annotations

import sys
import traceback

import typer
from typer.exceptions import TyperException

from stacbatch.cli import _emit, _info, _load, _sql
from stacbatch.cli._common import state
from stacbatch.errors import ExitCode, StacbatchError

app = typer.Typer(
    name="stacbatch",
    help="Build, manage and extend STAC catalogs at scale.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail on stderr (-vv: tracebacks)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr."),
) -> None:
    state.verbose = verbose
    state.quiet = quiet


app.command("load", help="Stage items from files, folders, static catalogs and stac-geoparquet.")(_load.load_cmd)
app.command("info", help="Summarise a stage per collection.")(_info.info_cmd)
app.command("sql", help="Run SQL (DuckDB) over views `items` and `collections`.")(_sql.sql_cmd)
app.command("emit", help="Write staged items as NDJSON, a static JSON catalog, or stac-geoparquet.")(_emit.emit_cmd)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=False)
    except StacbatchError as err:
        print(f"stacbatch: error: {err}", file=sys.stderr)
        if state.verbose >= 2:
            traceback.print_exc()
        sys.exit(int(err.exit_code))
    except typer.Exit as ex:
        sys.exit(ex.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        print(
            "stacbatch: interrupted; the stage is unchanged unless a commit was reported",
            file=sys.stderr,
        )
        sys.exit(130)
    except TyperException as err:  # usage errors (typer bundles its own click)
        show = getattr(err, "show", None)
        if callable(show):
            show()
        else:
            print(f"stacbatch: error: {err}", file=sys.stderr)
        sys.exit(int(ExitCode.USAGE))
    except BrokenPipeError:
        sys.exit(0)
    except Exception as err:  # a bug: say so in one line, keep the traceback behind -vv
        print(
            f"stacbatch: internal error: {type(err).__name__}: {err} (rerun with -vv for a traceback and report it)",
            file=sys.stderr,
        )
        if state.verbose >= 2:
            traceback.print_exc()
        sys.exit(int(ExitCode.INTERNAL))
    sys.exit(int(state.exit_code))
