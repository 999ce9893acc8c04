"""One test per file of ``sql/`` (as pgstac keeps one per SQL file): each parses, each is used by the code, the
stand-in tables have the columns and types of the files stacbatch writes, and the files with a rule of their own
are run on small inputs whose answer is known."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import stacbatch
from stacbatch.engine import _sql
from stacbatch.kernel._rows import STAGE_SCHEMA
from stacbatch.stage._audit import AUDIT_SCHEMA, TOMBSTONE_SCHEMA
from stacbatch.stage._verdicts import VERDICT_SCHEMA

ROOT = Path(__file__).resolve().parent.parent
SQL = sorted(p.stem for p in (ROOT / "sql").glob("*.sql"))
SAMPLE = ROOT / "samples" / "demo-items.ndjson.gz"

#: what each ``{placeholder}`` stands for where the code fills it in, as plain SQL that parses
FILLED = {
    "where": "WHERE collection IN ('a')",
    "files": "['a.parquet', 'b.parquet']",
    "asset_fields": "NULL",
    "columns": ", p.eo_cloud_cover",
    "source": "_empty_items",
    "target": "'out.parquet'",
    "predicate": "true",
}


#: where one file's placeholder stands for something else than in the others
FILLED_IN = {("select_rows", "source"): "SELECT *, 'f' AS filename, 0 AS file_row_number FROM _empty_items"}


def _filled(name: str) -> str:
    text = _sql.load(name)
    for key in set(re.findall(r"\{([a-z_]+)\}", text)):
        assert key in FILLED, f"sql/{name}.sql: unknown placeholder {{{key}}}: add it to FILLED"
        text = text.replace("{" + key + "}", FILLED_IN.get((name, key), FILLED[key]))
    return text


def test_every_sql_file_is_used_and_every_use_has_its_file() -> None:
    code = "\n".join(p.read_text() for p in (ROOT / "stacbatch").rglob("*.py"))
    used = set(re.findall(r"_sql\.load\(\"([a-z_]+)\"\)", code))
    assert used == set(SQL)


@pytest.mark.parametrize("name", SQL)
def test_sql_file_parses(name: str) -> None:
    """Each statement parses (binding needs the tables its caller makes: the tests of that caller cover it)."""
    text = _sql.load(name)
    assert text.startswith("--"), f"sql/{name}.sql: start with a comment naming its inputs"
    statements = duckdb.connect().extract_statements(_filled(name))
    assert statements


def _describe(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in con.sql(f"DESCRIBE {relation}").fetchall()]


def test_empty_items_has_the_columns_and_types_of_a_stage_file(tmp_path: Path) -> None:
    """``sql/empty_items.sql`` copies the core of ``STAGE_SCHEMA``: compared with a file that load wrote."""
    stage = str(tmp_path / "stage")
    stacbatch.load_to_stage(stage, [str(SAMPLE)])
    first = stacbatch.open_stage(stage).manifest.files[0]["path"]
    con = duckdb.connect()
    con.execute(_sql.load("empty_items"))
    core = ", ".join(f.name for f in STAGE_SCHEMA)
    stand_in = _describe(con, f"(SELECT {core} FROM _empty_items)")
    written = _describe(con, f"(SELECT {core} FROM read_parquet('{stage}/{first}'))")
    assert [n for n, _ in stand_in] == STAGE_SCHEMA.names
    assert stand_in == written


@pytest.mark.parametrize(
    ("sql", "table", "schema"),
    [
        ("audit_tables", "_empty_audit", AUDIT_SCHEMA),
        ("audit_tables", "_empty_tombstones", TOMBSTONE_SCHEMA),
        ("empty_validation", "_empty_validation", VERDICT_SCHEMA),
    ],
)
def test_stand_ins_match_the_files_they_stand_for(sql: str, table: str, schema: pa.Schema) -> None:
    con = duckdb.connect()
    con.execute(_sql.load(sql))
    con.register("empty", schema.empty_table())
    assert _describe(con, table) == _describe(con, "empty")
    nullable = {r[0]: r[2] == "YES" for r in con.sql(f"DESCRIBE {table}").fetchall()}
    assert nullable == {f.name: f.nullable for f in schema}


def test_duplicates_keeps_the_last_row_of_each_key(tmp_path: Path) -> None:
    """``sql/duplicates.sql``: rows of this run's files win over older files, and within them the highest
    stage_seq; every other row of a key seen twice or more is a loser, listed per file."""

    def write(name: str, rows: list[tuple[str, str, int]]) -> str:
        path = str(tmp_path / name)
        c, i, s = zip(*rows, strict=True)
        pq.write_table(pa.table({"collection": list(c), "id": list(i), "stage_seq": list(s)}), path)
        return path

    old = write("old.parquet", [("c", "a", 0), ("c", "b", 1), ("c", "only-old", 2)])
    new = write("new.parquet", [("c", "a", 10), ("c", "b", 11), ("c", "b", 12), ("c", "only-new", 13)])
    rows = duckdb.connect().execute(_sql.load("duplicates"), [[old, new], [new]]).fetchall()
    losers = {Path(f).name: (list(rows_), old_file, n) for f, rows_, old_file, n in rows}
    assert losers == {"old.parquet": ([0, 1], True, 2), "new.parquet": ([1], False, 1)}
