"""A load killed at any moment leaves the stage as it was before, or as it is after, and always consistent."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers import item, write_ndjson

import stacbatch


def state(stage: str) -> set[tuple[str, str, str]]:
    """The stage's content, after checking it agrees with its manifest."""
    st = stacbatch.open_stage(stage)
    for f in st.manifest.files:
        path = Path(stage) / f["path"]
        assert path.is_file(), f"manifest names a missing file {f['path']}"
        assert pq.ParquetFile(path).metadata.num_rows == f["rows"]
    rows = st.sql("SELECT collection, id, content_hash FROM items").fetchall()
    assert len(rows) == st.manifest.item_count()
    assert len(set((c, i) for c, i, _ in rows)) == len(rows), "duplicate (collection, id) in the stage"
    return set(rows)


def load_cmd(stage: str, src: Path, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "stacbatch", "-q", "load", str(src), "--stage", stage, "--batch-size", "50"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path]:
    first = [item(f"a{n}", collection=f"c{n % 2}", dt=f"20{10 + n % 10}-05-01T00:00:00Z") for n in range(400)]
    # the second load replaces half of the first and adds new items
    second = [item(f"a{n}", collection=f"c{n % 2}", dt="2024-01-01T00:00:00Z", title="v2") for n in range(0, 400, 2)]
    second += [item(f"b{n}", collection="c2") for n in range(300)]
    return write_ndjson(tmp_path / "first.ndjson", first), write_ndjson(tmp_path / "second.ndjson", second)


@pytest.mark.parametrize("point", ["after_write", "before_manifest", "after_manifest"])
@pytest.mark.parametrize("direct", [False, True], ids=["gathered", "written-by-workers"])
def test_kill_at_named_points(
    tmp_path: Path, sources: tuple[Path, Path], point: str, direct: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if direct:  # the stage's settings (kept in its manifest) let the loading workers write partitions themselves
        from stacbatch.stage import _manifest

        small = {**_manifest.DEFAULT_SETTINGS, "file_max_rows": 40, "time_bucket_min_items": 20}
        monkeypatch.setattr(_manifest, "DEFAULT_SETTINGS", small)
    stage = str(tmp_path / "stage")
    stacbatch.load_to_stage(stage, [str(sources[0])])
    before = state(stage)
    proc = load_cmd(stage, sources[1], STACBATCH_CRASH_AT=point)
    assert proc.wait(timeout=120) == 137
    now = state(stage)
    # What the finished load would give, on a copy of the stage made the ordinary way.
    ref = str(tmp_path / "ref")
    stacbatch.load_to_stage(ref, [str(sources[0])])
    stacbatch.load_to_stage(ref, [str(sources[1])])
    after = state(ref)
    assert now == (after if point == "after_manifest" else before)
    # The next load works (the lock died with the process) and leaves no orphan files behind.
    stacbatch.load_to_stage(stage, [str(sources[1])])
    assert state(stage) == after
    m = stacbatch.open_stage(stage).manifest
    listed = {f["path"] for f in m.files} | {r["path"] for r in m.retired if r["path"].startswith("items/")}
    on_disk = {str(p.relative_to(stage)) for p in Path(stage, "items").rglob("*.parquet")}
    assert on_disk == listed
    assert direct == any("-u0" in p for p in listed)
    audit = {str(p.relative_to(stage)) for p in Path(stage, "audit").iterdir()}
    assert audit == {e["path"] for e in stacbatch.open_stage(stage).manifest.audit}


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    stage = str(tmp_path / "stage")
    first = write_ndjson(tmp_path / "first.ndjson", [item(f"x{n}", collection=f"c{n % 3}") for n in range(2000)])
    stacbatch.load_to_stage(stage, [str(first)])
    before = state(stage)
    big = write_ndjson(
        tmp_path / "big.ndjson", [item(f"x{n}", collection=f"c{n % 3}", title="new") for n in range(0, 20000)]
    )
    ref = str(tmp_path / "ref")
    stacbatch.load_to_stage(ref, [str(first)])
    stacbatch.load_to_stage(ref, [str(big)])
    after = state(ref)
    rng = random.Random(7)
    outcomes = set()
    for _ in range(6):
        proc = load_cmd(stage, big)
        time.sleep(rng.uniform(0.05, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        now = state(stage)
        assert now in (before, after)
        outcomes.add("after" if now == after else "before")
        if now == after:  # start again from the first state for the next round
            stacbatch.load_to_stage(stage, [str(first)])
            stage_reset = state(stage)
            assert stage_reset != after
            before = stage_reset
    # The test only means something if some kill landed before the commit (the load takes several seconds).
    assert "before" in outcomes


def test_first_load_killed_leaves_a_usable_folder(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    stage = str(tmp_path / "stage")
    proc = load_cmd(stage, sources[0], STACBATCH_CRASH_AT="before_manifest")
    assert proc.wait(timeout=120) == 137
    with pytest.raises(stacbatch.StageError):
        stacbatch.open_stage(stage)  # nothing was committed: not a stage yet
    res = stacbatch.load_to_stage(stage, [str(sources[0])])
    assert res.staged == 400 and len(state(stage)) == 400


def test_reloading_a_collection_never_rewrites_the_committed_file(tmp_path: Path) -> None:
    from helpers import collection

    src = tmp_path / "c.json"
    src.write_bytes(__import__("orjson").dumps(collection("c1")))
    stage = str(tmp_path / "stage")
    stacbatch.load_to_stage(stage, [str(src)])
    rel = stacbatch.open_stage(stage).manifest.collections["c1"]["json"]
    committed = Path(stage) / rel
    before = committed.stat().st_ino, committed.stat().st_mtime_ns
    stacbatch.load_to_stage(stage, [str(src)])
    assert stacbatch.open_stage(stage).manifest.collections["c1"]["json"] == rel
    assert (committed.stat().st_ino, committed.stat().st_mtime_ns) == before


def _edit_cmd(kind: str, stage: str, other: str) -> list[str]:
    base = [sys.executable, "-m", "stacbatch", "-q"]
    if kind == "update":
        return [*base, "update", "--stage", stage, "--where", "id LIKE 'a1%'", "--set", "properties.v='edited'"]
    if kind == "delete":
        return [*base, "delete", "--stage", stage, "--where", "id LIKE 'a2%'"]
    return [*base, "merge", other, "--stage", stage, "--mode", "mirror"]


@pytest.mark.parametrize("point", ["after_write", "before_manifest", "after_manifest"])
@pytest.mark.parametrize("kind", ["update", "delete", "merge"])
def test_edits_killed_at_named_points(tmp_path: Path, sources: tuple[Path, Path], kind: str, point: str) -> None:
    """update, delete and merge leave the stage exactly before or exactly after, never a mix."""
    import shutil

    stage = str(tmp_path / "stage")
    stacbatch.load_to_stage(stage, [str(sources[0])])
    other = str(tmp_path / "other")
    stacbatch.load_to_stage(other, [str(sources[1])])
    ref = str(tmp_path / "ref")
    shutil.copytree(stage, ref)
    before = state(stage)
    subprocess.run(_edit_cmd(kind, ref, other), check=True, timeout=120)
    after = state(ref)
    assert after != before
    proc = subprocess.run(
        _edit_cmd(kind, stage, other), env={**os.environ, "STACBATCH_CRASH_AT": point}, timeout=120, check=False
    )
    assert proc.returncode == 137
    now = state(stage)
    if kind == "update":  # the hash covers properties.updated, the run's own time: compare what changed
        before_rows = set(before)
        now = {r if r in before_rows else (r[0], r[1], "changed") for r in now}
        after = {r if r in before_rows else (r[0], r[1], "changed") for r in after}
    assert now == (after if point == "after_manifest" else before)
    # The next write cleans up whatever the killed one left.
    stacbatch.load_to_stage(stage, [str(sources[0])])
    m = stacbatch.open_stage(stage).manifest
    listed = {f["path"] for f in m.files} | {r["path"] for r in m.retired if r["path"].startswith("items/")}
    on_disk = {str(p.relative_to(stage)) for p in Path(stage, "items").rglob("*.parquet")}
    assert on_disk == listed
