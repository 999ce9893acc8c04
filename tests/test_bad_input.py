"""Bad input: one clear line, a non-zero exit code, never a traceback; one bad item never sinks a batch."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from helpers import cli as run
from helpers import item, write_ndjson

import stacbatch
from stacbatch.errors import ExitCode


def test_bad_items_go_to_failures_and_the_rest_is_staged(tmp_path: Path, tmp_stage: str) -> None:
    src = tmp_path / "mixed.ndjson"
    lines = [
        orjson.dumps(item("ok1")),
        b'{"type": "Feature", "id": "broken", ',  # malformed JSON
        orjson.dumps({k: v for k, v in item("x").items() if k != "id"}),  # no id
        b"[1, 2, 3]",  # not an object
        orjson.dumps(item("badgeom", geometry={"type": "Polygon", "coordinates": [["a", "b"]]})),
        b"",  # blank lines are skipped, not failures
        orjson.dumps(item("ok2")),
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    proc = run("load", str(src), "--stage", tmp_stage)
    assert proc.returncode == ExitCode.PARTIAL, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "read 6, staged 2" in proc.stderr
    assert f"{src}:2" in proc.stderr  # file and line, in the one-line report
    stage = stacbatch.open_stage(tmp_stage)
    assert sorted(r[0] for r in stage.sql("SELECT id FROM items").fetchall()) == ["ok1", "ok2"]
    run_id = stage.manifest.last_run["run_id"]  # type: ignore[index]
    failures = [
        orjson.loads(x) for x in (Path(tmp_stage) / "runs" / run_id / "failures.ndjson").read_bytes().splitlines()
    ]
    assert [(f["line"], f.get("field")) for f in failures] == [(2, None), (3, "id"), (4, None), (5, "geometry")]
    assert all(f["source"] == str(src) and f["reason"] for f in failures)
    assert failures[3]["id"] == "badgeom"
    summary = orjson.loads((Path(tmp_stage) / "runs" / run_id / "summary.json").read_bytes())
    assert summary["status"] == "partial" and summary["counts"]["failed"] == 4


@pytest.mark.parametrize("name", ["nope.ndjson", "*.ndjson"])  # a pattern that matches nothing crashed once
def test_missing_source_is_one_line_and_writes_nothing(tmp_path: Path, tmp_stage: str, name: str) -> None:
    proc = run("load", str(tmp_path / name), "--stage", tmp_stage)
    assert proc.returncode == ExitCode.INPUT
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "no such file or folder" in proc.stderr and "Traceback" not in proc.stderr
    assert not Path(tmp_stage).exists()


def test_unknown_source_kind(tmp_path: Path, tmp_stage: str) -> None:
    (tmp_path / "x.txt").write_text("hello")
    proc = run("load", str(tmp_path / "x.txt"), "--stage", tmp_stage)
    assert proc.returncode == ExitCode.INPUT and "unknown source kind" in proc.stderr


def test_unreadable_source(tmp_path: Path, tmp_stage: str) -> None:
    import os

    if os.geteuid() == 0:
        # root reads anything; simulate with a folder where a file is expected inside a gzip name
        bad = tmp_path / "bad.ndjson.gz"
        bad.write_bytes(b"not gzip at all")
        proc = run("load", str(bad), "--stage", tmp_stage)
        assert proc.returncode == ExitCode.PARTIAL and "cannot read" in proc.stderr
        assert "Traceback" not in proc.stderr
        return
    src = write_ndjson(tmp_path / "a.ndjson", [item("a")])
    src.chmod(0)
    proc = run("load", str(src), "--stage", tmp_stage)
    assert proc.returncode == ExitCode.INPUT and "permission denied" in proc.stderr


def test_no_stage_given(tmp_path: Path) -> None:
    proc = run("info", unset=("STACBATCH_STAGE",))
    assert proc.returncode == ExitCode.INPUT and "--stage" in proc.stderr


def test_stage_env_var(tmp_path: Path, tmp_stage: str) -> None:
    import os

    src = write_ndjson(tmp_path / "a.ndjson", [item("a")])
    env = {**os.environ, "STACBATCH_STAGE": tmp_stage}
    assert run("load", str(src), env=env).returncode == 0
    proc = run("sql", "SELECT count(*) AS n FROM items", "--format", "csv", env=env)
    assert proc.stdout.splitlines() == ["n", "1"]


def test_missing_stage(tmp_path: Path) -> None:
    proc = run("info", "--stage", str(tmp_path / "none"))
    assert proc.returncode == ExitCode.STAGE and "no such stage" in proc.stderr


def test_bad_sql_is_one_line(tmp_path: Path, tmp_stage: str) -> None:
    stacbatch.load_to_stage(tmp_stage, [str(write_ndjson(tmp_path / "a.ndjson", [item("a")]))])
    proc = run("sql", "SELEC nonsense", "--stage", tmp_stage)
    assert proc.returncode == ExitCode.INPUT and proc.stderr.startswith("stacbatch: error: query failed")
    assert proc.stderr.strip().count("\n") == 0
    proc = run("emit", "--stage", tmp_stage, "--format", "ndjson", "--to", str(tmp_path / "o"), "--where", "nope > 1")
    assert proc.returncode == ExitCode.INPUT and "--where" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("emit", "--stage", tmp_stage, "--format", "ndjson", "--to", str(tmp_path / "o"), "-c", "zzz")
    assert proc.returncode == ExitCode.INPUT and "not in the stage" in proc.stderr


def test_usage_error_exit_code() -> None:
    proc = run("load")
    assert proc.returncode == ExitCode.USAGE


def test_not_a_stage_folder(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something.txt").write_text("x")
    src = write_ndjson(tmp_path / "a.ndjson", [item("a")])
    proc = run("load", str(src), "--stage", str(tmp_path / "full"))
    assert proc.returncode == ExitCode.STAGE and "not empty" in proc.stderr


def test_failure_line_numbers_across_ranges_and_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stacbatch.sources import _detect

    monkeypatch.setattr(_detect, "CHUNK_BYTES", 2048)  # many byte ranges
    lines = [orjson.dumps(item(f"i{n}")) for n in range(300)]
    for bad in (17, 150, 299):  # 1-based line numbers of the bad lines
        lines[bad - 1] = b'{"oops": '
    src = tmp_path / "many.ndjson"
    src.write_bytes(b"\n".join(lines) + b"\n")
    for workers in (1, 2):
        stage = str(tmp_path / f"stage{workers}")
        res = stacbatch.load_to_stage(stage, [str(src)], workers=workers)
        assert (res.staged, res.failed) == (297, 3)
        run_dir = Path(stage) / "runs" / res.run_id
        got = [orjson.loads(x)["line"] for x in (run_dir / "failures.ndjson").read_bytes().splitlines()]
        assert got == [17, 150, 299]


def test_version() -> None:
    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("stacbatch ")


def test_second_writer_is_refused(tmp_path: Path, tmp_stage: str) -> None:
    src = write_ndjson(tmp_path / "a.ndjson", [item("a")])
    stacbatch.load_to_stage(tmp_stage, [str(src)])
    holder = stacbatch.open_stage(tmp_stage)
    with holder.write_lock():
        proc = run("load", str(src), "--stage", tmp_stage)
    assert proc.returncode == ExitCode.STAGE and "another stacbatch process" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert stacbatch.load_to_stage(tmp_stage, [str(src)]).replaced == 1  # the lock is free again


def test_environment_errors_are_one_line(tmp_path: Path, tmp_stage: str) -> None:
    src = write_ndjson(tmp_path / "a.ndjson", [item("a")])
    stacbatch.load_to_stage(tmp_stage, [str(src)])
    (tmp_path / "taken").mkdir()
    # a folder where the single output file should go
    proc = run("emit", "--stage", tmp_stage, "--format", "ndjson", "--single-file", "--to", str(tmp_path / "taken"))
    assert proc.returncode == ExitCode.INPUT, proc.stderr
    assert proc.stderr.startswith("stacbatch: error:") and proc.stderr.strip().count("\n") == 0
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
