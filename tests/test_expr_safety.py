"""User SQL expressions (mapping `sql:`/`when:`, update/delete/transform/emit `--where`, `--set`) are one expression
and nothing else: checking or running them never executes another statement, and they read or write no file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest
from helpers import cli, collection, item, write_ndjson

import stacbatch
from stacbatch.engine._sql import expression_problem

#: Each tries to run a second statement (or read a file) when pasted into the query the expression goes in.
ESCAPES = [
    "1); COPY (SELECT 42) TO 'pwned.csv'; SELECT (1",
    "1) -- '\n; COPY (SELECT 42) TO 'pwned.csv'; SELECT (1 --'\n",
    "1 /* ; COPY (SELECT 42) TO 'pwned.csv'; */",
    "(SELECT 1); COPY (SELECT 42) TO 'pwned.csv'",
    "1), (SELECT 42 FROM read_csv('pwned.csv')",
    "(SELECT count(*) FROM read_text('pwned.csv'))",
    "(SELECT count(*) FROM 'pwned.csv')",
    "(WITH x AS (SELECT 1) SELECT * FROM x)) UNION ALL (SELECT 2",
]
#: through the CLI (each is a few processes): a second statement, one hidden by a comment, a file read
CLI_ESCAPES = [ESCAPES[0], ESCAPES[1], ESCAPES[5]]


def one_clear_line(p: subprocess.CompletedProcess[str], *words: str) -> None:
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in p.stderr, (w, p.stderr)


@pytest.mark.parametrize(
    "expr",
    [
        "upper(properties.platform)",
        "properties.\"eo:cloud_cover\" > 90 AND id <> 'a;b'",
        "list_transform([1, 2], x -> x + 1)",
        "(SELECT max(v) FROM range(3) t(v))",
        "CASE WHEN a THEN ')' ELSE '(' END",
        "$$a;b$$ || 'c'",
    ],
)
def test_single_expressions_pass(expr: str) -> None:
    assert expression_problem(expr) is None


@pytest.mark.parametrize("expr", ESCAPES)
def test_escapes_are_refused(expr: str) -> None:
    assert expression_problem(expr)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "in.csv").write_text("id,lon,lat\na,1,2\nb,3,4\n")
    items = [item(f"i{n}", properties={"datetime": "2021-01-01T00:00:00Z", "platform": "x"}) for n in range(3)]
    write_ndjson(tmp_path / "items.ndjson", items)
    (tmp_path / "c1.json").write_bytes(orjson.dumps(collection("c1")))
    stacbatch.load_to_stage(str(tmp_path / "stage"), [str(tmp_path / "items.ndjson"), str(tmp_path / "c1.json")])
    return tmp_path


def _mapping(sql: str) -> str:
    quoted = sql.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return (
        "collection: c\nid: {column: id}\ndatetime: '2020-01-01T00:00:00Z'\ngeometry: {lonlat: [lon, lat]}\n"
        f'properties:\n  x: {{sql: "{quoted}"}}\n  y: {{case: [{{when: "{quoted}", then: a}}]}}\n'
    )


@pytest.mark.parametrize("expr", CLI_ESCAPES)
def test_mapping_sql_is_refused_before_anything_runs(work: Path, expr: str) -> None:
    """`mapping check --explain` and `load --mapping` used to run the COPY, then report a parser error."""
    (work / "m.yaml").write_text(_mapping(expr))
    for args in (["mapping", "check", "m.yaml", "in.csv", "--explain"], ["load", "in.csv", "-m", "m.yaml"]):
        p = cli(*args, "--stage", "new", cwd=work) if args[0] == "load" else cli(*args, cwd=work)
        one_clear_line(p, "m.yaml:6: properties.x.sql")
        assert not (work / "pwned.csv").exists()
    assert not (work / "new").exists()


@pytest.mark.parametrize("expr", CLI_ESCAPES)
def test_edit_and_emit_expressions_are_refused(work: Path, expr: str) -> None:
    version = stacbatch.open_stage(str(work / "stage")).manifest.version
    for named, args in (
        ("--set properties.x", ["update", "--where", "true", "--set", f"properties.x={expr}"]),
        ("--where", ["update", "--where", expr, "--set", "properties.x=1"]),
        ("--where", ["delete", "--where", expr]),
        ("--where", ["emit", "-f", "ndjson", "-o", "out.ndjson", "--where", expr]),
        ("--set title", ["update-collection", "c1", "--set", f"title={expr}"]),
    ):
        p = cli(*args, "--stage", "stage", cwd=work)
        one_clear_line(p, named)
        assert not (work / "pwned.csv").exists()
    (work / "t.yaml").write_text(f"properties:\n  x: {{sql: {_quote(expr)}}}\n")
    p = cli("transform", "--mapping", "t.yaml", "--stage", "stage", cwd=work)
    one_clear_line(p, "t.yaml:2: properties.x.sql")
    assert not (work / "pwned.csv").exists() and not (work / "out.ndjson").exists()
    assert stacbatch.open_stage(str(work / "stage")).manifest.version == version


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def test_mapping_connection_reads_no_file(work: Path) -> None:
    """Defence in depth: even an expression the parser check would let through cannot reach a file from the
    connection that runs mappings (external access is off once the lookups are read)."""
    import duckdb
    import pyarrow as pa

    from stacbatch.mapping._doc import read_mapping
    from stacbatch.mapping._run import Mapper

    (work / "m.yaml").write_text(_mapping("1"))
    mapper = Mapper(read_mapping(str(work / "m.yaml")), {"id": "VARCHAR", "lon": "DOUBLE", "lat": "DOUBLE"})
    mapper.con.register("__t", pa.table({"a": [1]}))
    assert mapper.con.sql("SELECT a FROM __t").fetchall() == [(1,)]
    with pytest.raises(duckdb.PermissionException):
        mapper.con.sql(f"SELECT * FROM read_csv('{work / 'in.csv'}')").fetchall()
