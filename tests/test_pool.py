"""Worker-process helpers: pandas kept out of pyarrow's conversions, malloc tuning, the shared pool."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import item, write_ndjson

import stacbatch
from stacbatch.engine._pool import Workers


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def test_without_pandas_keeps_conversions_from_importing_pandas_but_not_users() -> None:
    out = _run(
        "import sys\n"
        "from stacbatch.engine._pool import without_pandas\n"
        "without_pandas()\n"
        "import numpy as np, pyarrow as pa, pyarrow.compute as pc\n"
        "pa.scalar(1); pa.array([1, None]); pa.array(np.arange(3)); pc.fill_null(pa.array([None, 'a']), 'x')\n"
        "print('pandas' in sys.modules)\n"
        "print(type(pa.table({'a': [1]}).to_pandas()).__name__)\n"
    )
    assert out.splitlines() == ["False", "DataFrame"]


def test_malloc_tuning_takes_on_glibc_and_is_harmless() -> None:
    import platform

    out = _run(
        "from stacbatch.engine._pool import keep_freed_memory, release_freed_memory\n"
        "keep_freed_memory()\n"
        "blocks = [bytearray(8 << 20) for _ in range(8)]\n"
        "del blocks\n"
        "release_freed_memory()\n"
        "print('ok')\n"
    )
    assert out == "ok"
    if platform.libc_ver()[0] == "glibc":
        assert _run("from stacbatch.engine._pool import keep_freed_memory; print(keep_freed_memory())") == "True"


def _square(x: int) -> int:
    return x * x


def test_workers_keep_order_and_serve_several_phases() -> None:
    with Workers(2) as pool:
        assert list(pool.ordered_map(_square, range(50))) == [x * x for x in range(50)]
        assert list(pool.ordered_map(_square, [3, 1, 2])) == [9, 1, 4]
    with Workers(1) as inline:
        assert not inline.parallel
        assert list(inline.ordered_map(_square, range(5))) == [0, 1, 4, 9, 16]


@pytest.mark.parametrize("entry", ["script", "module"])
def test_cli_load_with_workers_from_the_console_script_and_the_module(tmp_path: Path, entry: str) -> None:
    """``stacbatch load`` starts its fork server early (``prestart``); its workers, which re-import the console
    script with the same argv, must not start another one."""
    src = write_ndjson(tmp_path / "a.ndjson", [item(f"i{n}", collection=f"c{n % 2}") for n in range(200)])
    stage = str(tmp_path / "stage")
    script = Path(sys.executable).parent / "stacbatch"
    cmd = [str(script)] if entry == "script" else [sys.executable, "-m", "stacbatch"]
    proc = subprocess.run(
        [*cmd, "load", str(src), "--stage", stage, "--workers", "2"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "staged 200" in proc.stderr
    assert stacbatch.open_stage(stage).sql("SELECT count(*) FROM items").fetchall() == [(200,)]


def test_prestart_guesses_the_input_from_regular_files_only(tmp_path: Path) -> None:
    from stacbatch.cli._prestart import local_bytes as _local_bytes

    big = tmp_path / "a.ndjson"
    big.write_bytes(b"x" * 1000)
    (tmp_path / "stage").mkdir()
    argv = ["stacbatch", "-q", "load", str(big), "http://127.0.0.1:1/stac", "--stage", str(tmp_path / "stage")]
    assert _local_bytes(argv) == 1000  # the URL, the folder and the options count for nothing


def _env(name: str) -> str | None:
    import os

    return os.environ.get(name)


def test_workers_keep_freed_pages_longer_and_this_process_environment_is_untouched() -> None:
    """Workers run with mimalloc's purge delay raised (fewer page faults per batch); this process's environment
    is as it was (the fork server may already be running, with the value it was started with)."""
    import os

    name = "MIMALLOC_PURGE_DELAY"
    before = os.environ.get(name)
    with Workers(2) as pool:
        got = list(pool.ordered_map(_env, [name, name]))
    assert os.environ.get(name) == before
    assert got == [before or "5000"] * 2


def _records_of(unit: object) -> list[dict[str, object]]:
    return unit.records.to_pylist()  # type: ignore[attr-defined,no-any-return]


def test_records_reach_workers_through_a_mapped_file_that_is_then_removed() -> None:
    import os
    import pickle

    import pyarrow as pa

    from stacbatch.engine import _handoff
    from stacbatch.sources import RecordsUnit

    table = pa.table({"a": [1, None, 3], "b": ["x", None, "ü"]})
    unit = RecordsUnit("src.csv", 1, table, {"id": {"column": "a"}}, {"a": "BIGINT", "b": "VARCHAR"}, (), None)
    data = pickle.dumps(unit)
    assert len(data) < 1000  # the records are not in the pickle
    folder = _handoff._make_folder()

    def arrow_files() -> list[str]:  # the folder also holds the fork server's socket (multiprocessing's tempdir)
        return [n for n in os.listdir(folder) if n.endswith(".arrow")]

    assert len(arrow_files()) == 1
    back = pickle.loads(data)
    assert back.records.equals(table) and back.doc == unit.doc and back.first_row == 1
    assert arrow_files() == []  # unlinked once mapped; the mapping keeps the pages
    del back
    # through real worker processes, in order
    units = [RecordsUnit("s", i, pa.table({"n": [i, i + 1]}), None, {}) for i in range(6)]
    with Workers(2) as pool:
        got = list(pool.ordered_map(_records_of, units))
    assert got == [[{"n": i}, {"n": i + 1}] for i in range(6)]
    # anything that is not an Arrow table is pickled as it is
    assert pickle.loads(pickle.dumps(RecordsUnit("s", 1, [1, 2], None, {}))).records == [1, 2]


def test_handoff_folders_of_dead_processes_are_removed(tmp_path: Path) -> None:
    import os

    from stacbatch.engine import _handoff

    dead = tmp_path / "stacbatch-handoff-999999999-abc"  # above any pid_max: no such process
    mine = tmp_path / f"stacbatch-handoff-{os.getpid()}-def"
    other = tmp_path / "unrelated-999999999"
    for d in (dead, mine, other):
        d.mkdir()
        (d / "x.arrow").write_bytes(b"x")
    _handoff._remove_orphans(str(tmp_path))
    assert not dead.exists() and mine.exists() and other.exists()
