"""SQL lives in ``sql/*.sql`` files; this module loads them and quotes identifiers and literals.

Values go to DuckDB as parameters wherever DuckDB allows them; view definitions cannot take parameters, so file
lists are inlined through ``literal`` (the one quoting helper, with ``ident`` for identifiers).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stacbatch.engine import _fs
from stacbatch.errors import QueryError

if TYPE_CHECKING:
    import duckdb

_PACKAGE = Path(__file__).resolve().parent.parent  # stacbatch/


@cache
def _sql_dir() -> Path:
    for candidate in (_PACKAGE / "sql", _PACKAGE.parent / "sql"):  # installed; a source tree
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("stacbatch's sql/ folder is missing from the installation")


@cache
def load(name: str) -> str:
    """The text of ``sql/<name>.sql``."""
    return (_sql_dir() / f"{name}.sql").read_text()


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def literal_list(values: list[str]) -> str:
    return "[" + ", ".join(literal(v) for v in values) + "]"


def one_line(err: BaseException) -> str:
    """A library's (often multi-line) error message folded onto one line for the user. DuckDB's echo of the query
    (``LINE 1: ...`` with a caret) is dropped: it shows stacbatch's generated SQL, not what the user wrote."""
    text = str(err)
    cut = text.find("\nLINE ")
    if cut > 0:
        text = text[:cut]
    return " ".join(text.split())


def no_progress_bar(con: duckdb.DuckDBPyConnection) -> None:
    """DuckDB's progress bar off: stderr belongs to stacbatch's own messages. In Jupyter without ipywidgets DuckDB
    refuses any change to that setting (it checks for the widget first) and shows no bar anyway: left as it is."""
    import duckdb

    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.InvalidInputException as err:
        if "ipywidgets" not in str(err):
            raise


@cache
def _local_database() -> duckdb.DuckDBPyConnection:
    import duckdb  # imported on first use: a load that never queries starts ~0.1 s sooner

    con = duckdb.connect()
    no_progress_bar(con)
    # Internal queries over one file's rows: a small cache is enough, and leaves memory to the worker's own work.
    con.execute("SET memory_limit = '512MB'")
    return con


def cursor() -> duckdb.DuckDBPyConnection:
    """A cheap connection (~1 ms, a fresh one costs ~40 ms) to one in-memory database per process, for short
    internal queries over local data; close it after use. Names registered on it are visible to other cursors."""
    return _local_database().cursor()


def connect(fs: Any = None) -> duckdb.DuckDBPyConnection:
    """Every DuckDB connection stacbatch opens: no progress bar (stderr belongs to stacbatch's own messages);
    a non-local fsspec filesystem (S3, memory, ...) is registered so DuckDB reads ``proto://`` paths through it."""
    import duckdb

    con = duckdb.connect()
    no_progress_bar(con)
    # Stage files are never rewritten in place (a write makes new names), so cached footers never go stale; the
    # cache spares each query reopening every file's footer (a third of a small query's time on an 84-file stage).
    con.execute("SET parquet_metadata_cache = true")
    # Timestamps are UTC in STAC and in the stage (a text without an offset reads as UTC, as the kernel reads it);
    # a session in the machine's zone would shift such values and show every timestamp in local time.
    con.execute("SET TimeZone = 'UTC'")
    if fs is not None and not _fs.is_local(fs):
        con.register_filesystem(fs)
    return con


@cache
def _sandbox_database() -> duckdb.DuckDBPyConnection:
    import duckdb

    con = duckdb.connect()
    no_progress_bar(con)
    con.execute("SET memory_limit = '512MB'")
    # No file, network or extension: user expressions evaluated here read only what is registered on the cursor.
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def sandbox() -> duckdb.DuckDBPyConnection:
    """A cursor like ``cursor()`` on a database that cannot touch files (``enable_external_access = false``, locked):
    where user expressions run over registered Arrow data. Close it after use."""
    return _sandbox_database().cursor()


#: Table functions an expression may read from (in a subquery): they make rows, and read or write no file.
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest", "generate_subscripts"})
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
#: The parts of ``SELECT (expr)`` that must be empty for it to be one expression and nothing else.
_EMPTY_PARTS = ("where_clause", "having", "qualify", "sample")


def expression_problem(expr: str) -> str | None:
    """Why ``expr`` is not exactly one SQL expression, or None. Parsed by DuckDB (nothing runs): it must be one
    SELECT of one value with no FROM, clause or second statement, keep within its own parentheses (it is wrapped
    in them where it is used), have no comment (which could hide the rest of the query it goes into), and read no
    file: no table function but those that make rows, no table named like a file or URL."""
    import duckdb

    try:
        tokens = duckdb.tokenize(expr)
    except (duckdb.Error, RuntimeError) as err:
        return one_line(err)
    if not tokens:
        return "no expression"
    depth = 0
    for n, (start, kind) in enumerate(tokens):
        text = expr[start : tokens[n + 1][0] if n + 1 < len(tokens) else len(expr)].strip()
        if kind == duckdb.token_type.comment:
            return "comments are not allowed in an expression"
        if kind != duckdb.token_type.operator:
            continue
        if ";" in text:
            return "one expression only (no ';')"
        for char in text:
            depth += {"(": 1, ")": -1}.get(char, 0)
            if depth < 0:
                return "a ')' closes a parenthesis the expression did not open"
    if depth:
        return "unbalanced parentheses"
    con = sandbox()
    try:
        (text,) = con.execute("SELECT json_serialize_sql(?)", ["SELECT (" + expr + ")"]).fetchone() or ("",)
    except duckdb.Error as err:
        return one_line(err)
    finally:
        con.close()
    tree = json.loads(text)
    if tree.get("error"):
        return " ".join(str(tree.get("error_message", "does not parse")).split())
    statements = tree.get("statements") or []
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    if (
        node.get("type") != "SELECT_NODE"
        or len(node.get("select_list") or []) != 1
        or (node.get("from_table") or {}).get("type") != "EMPTY"
        or any(node.get(part) for part in _EMPTY_PARTS)
        or node.get("group_expressions")
        or node.get("modifiers")
        or (node.get("cte_map") or {}).get("map")
        or node["select_list"][0].get("alias")
    ):
        return "not one expression (it must be a single value, e.g. upper(properties.platform))"
    return _table_problem(node["select_list"][0])


def _table_problem(tree: Any) -> str | None:
    """A table function or file a (sub)query inside the expression would read, as the reason to refuse it."""
    if isinstance(tree, list):
        for v in tree:
            found = _table_problem(v)
            if found:
                return found
        return None
    if not isinstance(tree, dict):
        return None
    kind = tree.get("type")
    if kind == "TABLE_FUNCTION":
        name = str((tree.get("function") or {}).get("function_name", "")).lower()
        if name not in SAFE_TABLE_FUNCTIONS:
            return f"table function {name}() is not allowed in an expression (it may read or write files)"
    elif kind == "BASE_TABLE":
        name = str(tree.get("table_name", ""))
        if not _TABLE_NAME.fullmatch(name):
            return f"reading {name!r} is not allowed in an expression"
    for v in tree.values():
        found = _table_problem(v)
        if found:
            return found
    return None


def check_expression(expr: str, what: str) -> None:
    """Raise ``QueryError`` (one line, naming ``what``: the option or field) unless ``expr`` is exactly one SQL
    expression (``expression_problem``). Every user expression goes through this before it is put in a query."""
    problem = expression_problem(expr)
    if problem:
        raise QueryError(f"{what} {expr!r}: {problem}")
