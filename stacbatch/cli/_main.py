"""Entry point: one place turns errors into one line and an exit code (never a traceback, unless ``-v``)."""

from __future__ import annotations

import sys
import traceback
from typing import NoReturn

import typer
from typer.exceptions import TyperException

from stacbatch.cli import _api, _diff, _edit, _emit, _extend, _info, _load, _mapping, _sql, _validate
from stacbatch.cli._common import state
from stacbatch.cli._progress import Bars
from stacbatch.engine._pool import without_pandas
from stacbatch.engine._progress import reporting
from stacbatch.errors import ExitCode, StacbatchError

app = typer.Typer(
    name="stacbatch",
    help="Build, manage and extend STAC catalogs at scale.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback(invoke_without_command=True)
def _global(
    ctx: typer.Context,
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More detail on stderr (-vv: tracebacks)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only errors on stderr."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from stacbatch import __version__
        from stacbatch.kernel._scan import AVAILABLE

        kernel = "pure Python: no C kernel was built"
        if AVAILABLE:
            from stacbatch.kernel import _kernel

            # without pyarrow's xxHash header at build time, mapped items are hashed in Python (same hashes)
            kernel = "C kernel" if getattr(_kernel, "XXH3", 0) else "C kernel, built without xxHash"
        print(f"stacbatch {__version__} ({kernel})")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit(int(ExitCode.USAGE))
    state.verbose = verbose
    state.quiet = quiet


app.command(
    "load",
    help="Stage items from files, folders, static catalogs, stac-geoparquet and STAC APIs; tables with --mapping.",
)(_load.load_cmd)
app.command("discover", help="List the collections of a STAC API (CMR-STAC providers too).")(_api.discover_cmd)
app.command("info", help="Summarise a stage per collection.")(_info.info_cmd)
app.command("queryables", help="Print the stage's property columns as a STAC API Queryables JSON Schema.")(
    _info.queryables_cmd
)
app.command("upgrade", help="Add property and asset_fields columns to files staged before they existed.")(
    _info.upgrade_cmd
)
app.command("sql", help="Run SQL (DuckDB) over views `items` and `collections`.")(_sql.sql_cmd)
app.command("update", help="Set, unset or rename fields of selected items (SQL expressions).")(_edit.update_cmd)
app.command("update-collection", help="Set, unset or rename fields of a staged Collection; recompute its extent.")(
    _edit.update_collection_cmd
)
app.command("extend", help="Apply an extension (alternate-assets, a file, an installed one) to selected items.")(
    _extend.extend_cmd
)
app.command("migrate", help="Migrate STAC 1.0.0 items to 1.1.0 as PySTAC does (core and extension schemas).")(
    _extend.migrate_cmd
)
app.command("delete", help="Delete selected items (tombstones and audit rows are kept).")(_edit.delete_cmd)
app.command("diff", help="Compare two stages (or sources): added, deleted, modified, unchanged.")(_diff.diff_cmd)
app.command("merge", help="Apply a stage, change set or source to a stage (upsert, insert-only, mirror).")(
    _diff.merge_cmd
)
app.add_typer(_mapping.mapping_app, name="mapping")
app.command("transform", help="Apply the mapping language to staged items (set, rename, unset; audited).")(
    _mapping.transform_cmd
)
app.command("scaffold", help="Stage items from tabular records with a mapping; create their Collections.")(
    _mapping.scaffold_cmd
)
app.command("emit", help="Write staged items as NDJSON, a static JSON catalog, or stac-geoparquet.")(_emit.emit_cmd)
app.command(
    "validate", help="Validate Items, Collections and Catalogs (a stage, files or an API) against their schemas."
)(_validate.validate_cmd)
app.add_typer(_validate.schemas_app, name="schemas")


def main(argv: list[str] | None = None) -> None:
    without_pandas()
    try:
        bars = Bars.for_stderr()
        try:
            with reporting(bars):
                rc = app(args=argv, standalone_mode=False)
        finally:
            bars.finish()  # before any message below
        if isinstance(rc, int) and rc:  # typer returns Exit codes instead of raising in this mode
            if rc == 130:  # typer's answer to a KeyboardInterrupt it caught
                _say_interrupted()
            sys.exit(rc)
    except StacbatchError as err:
        if _interrupted(err):  # DuckDB turns SIGINT into an error of its own, which callers may have wrapped
            _say_interrupted()
        print(f"stacbatch: error: {err}", file=sys.stderr)
        if state.verbose >= 2:
            traceback.print_exc()
        sys.exit(int(err.exit_code))
    except typer.Exit as ex:  # typer's Exit keeps its code in args (click's kept it in exit_code)
        code = getattr(ex, "exit_code", None)
        sys.exit(int(code if code is not None else (ex.args[0] if ex.args else 0)))
    except (typer.Abort, KeyboardInterrupt):
        _say_interrupted()
    except TyperException as err:  # usage errors (typer bundles its own click)
        show = getattr(err, "show", None)
        if callable(show):
            show()
        else:
            print(f"stacbatch: error: {err}", file=sys.stderr)
        sys.exit(int(ExitCode.USAGE))
    except BrokenPipeError:
        sys.exit(0)
    except OSError as err:  # the environment, not a bug: permissions, a full disk, a folder where a file goes
        where = f": {err.filename}" if err.filename else ""
        print(f"stacbatch: error: {err.strerror or err}{where}", file=sys.stderr)
        if state.verbose >= 2:
            traceback.print_exc()
        sys.exit(int(ExitCode.INPUT))
    except Exception as err:  # a bug: say so in one line, keep the traceback behind -vv
        if _interrupted(err):
            _say_interrupted()
        print(
            f"stacbatch: internal error: {type(err).__name__}: {err} (rerun with -vv for a traceback and report it)",
            file=sys.stderr,
        )
        if state.verbose >= 2:
            traceback.print_exc()
        sys.exit(int(ExitCode.INTERNAL))
    sys.exit(int(state.exit_code))


def _interrupted(err: BaseException | None) -> bool:
    """Whether ``err`` is, or was raised while handling, DuckDB's answer to SIGINT (or SIGINT itself)."""
    for _ in range(10):
        if err is None:
            return False
        if type(err).__name__ == "InterruptException" and type(err).__module__.split(".")[0] in ("duckdb", "_duckdb"):
            return True
        if isinstance(err, KeyboardInterrupt) or (type(err) is RuntimeError and str(err) == "Query interrupted"):
            return True  # the second: how DuckDB's relation API reports it
        err = err.__cause__ or err.__context__
    return False


def _say_interrupted() -> NoReturn:
    print("stacbatch: interrupted; the stage is unchanged unless a commit was reported", file=sys.stderr)
    sys.exit(130)
