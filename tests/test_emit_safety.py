"""Emit's sharp edges (issue 18): exact trees on re-emit, atomic outputs under SIGKILL, ids that make long or
unsafe paths, and targets inside the stage."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from helpers import cli as run
from helpers import item, write_ndjson

import stacbatch
from stacbatch.emit._target import MARKER
from stacbatch.errors import ExitCode


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int = ExitCode.INPUT) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    return proc.stderr


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _walk(catalog: Path) -> list[Path]:
    """Item files reachable from a catalog by its relative child/item links."""
    found, stack = [], [catalog]
    while stack:
        doc_path = stack.pop()
        for link in orjson.loads(doc_path.read_bytes())["links"]:
            target = Path(os.path.normpath(doc_path.parent / link["href"]))
            if link["rel"] == "child":
                stack.append(target)
            elif link["rel"] == "item":
                found.append(target)
    return sorted(found)


def _no_hidden_folders(folder: Path) -> None:
    """The replaced tree is deleted in the background: wait for it (and for no other temporary folder)."""
    deadline = time.monotonic() + 60
    while [p for p in folder.iterdir() if p.name.startswith(".")] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def _stage(tmp_path: Path, items: list[dict]) -> str:
    stage = str(tmp_path / "stage")
    res = stacbatch.load_to_stage(stage, [str(write_ndjson(tmp_path / "src.ndjson", items))])
    assert not res.failed
    return stage


ITEMS = [item(f"i{n:02d}", collection=f"c{n % 3}") for n in range(30)] + [item("loose", None)]


# -- 1. re-emitting a tree ----------------------------------------------------------------------------------------


def test_reemit_tree_holds_exactly_the_new_tree(tmp_path: Path) -> None:
    """Delete items, emit again: no stale item file is left, and loading the tree does not bring them back."""
    stage = _stage(tmp_path, ITEMS)
    out = tmp_path / "tree"
    assert run("emit", "--stage", stage, "-f", "json", "--to", str(out)).returncode == 0
    assert len(_walk(out / "catalog.json")) == 31
    proc = run("delete", "--stage", stage, "--where", "collection = 'c2' OR id IN ('i00', 'i03')")
    assert proc.returncode == 0, proc.stderr
    proc = run("emit", "--stage", stage, "-f", "json", "--to", str(out))
    assert proc.returncode == 0, proc.stderr
    linked = _walk(out / "catalog.json")
    on_disk = sorted(p for p in out.rglob("*.json") if p.name not in ("catalog.json", "collection.json"))
    assert linked == on_disk and len(on_disk) == 31 - 10 - 2
    assert [p.name for p in (out / "c2").iterdir()] == ["collection.json"]  # the emptied collection stays
    _no_hidden_folders(tmp_path)
    back = str(tmp_path / "back")
    assert run("load", str(out), "--stage", back).returncode == 0
    assert stacbatch.open_stage(back).sql("SELECT count(*) FROM items").fetchall() == [(19,)]
    assert (out / MARKER).is_file()


def test_tree_refuses_a_foreign_folder_unless_forced(tmp_path: Path) -> None:
    stage = _stage(tmp_path, ITEMS)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    err = _one_line_error(run("emit", "--stage", stage, "-f", "json", "--to", str(out)))
    assert str(out) in err and "--force" in err
    assert _snapshot(out) == {"notes.txt": b"keep me"}
    proc = run("emit", "--stage", stage, "-f", "json", "--to", str(out), "--force")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "notes.txt").exists() and len(_walk(out / "catalog.json")) == 31
    # A file where the folder should be is refused even with --force.
    (tmp_path / "afile").write_text("x")
    _one_line_error(run("emit", "--stage", stage, "-f", "json", "--to", str(tmp_path / "afile"), "--force"))
    assert (tmp_path / "afile").read_text() == "x"


def test_tree_on_fsspec_removes_what_the_new_tree_does_not_name(tmp_path: Path) -> None:
    """Object stores have no rename: new objects are written, then the ones the new tree does not name deleted."""
    import fsspec

    mem = fsspec.filesystem("memory")
    stage = _stage(tmp_path, ITEMS)
    out = f"memory://tree-{tmp_path.name}"
    root = out.removeprefix("memory://")
    try:
        st = stacbatch.open_stage(stage)
        stacbatch.emit_json_tree(st, out)
        assert mem.exists(f"/{root}/{MARKER}") and mem.exists(f"/{root}/c2/i02/i02.json")
        from stacbatch.edit import delete

        delete(stage, where="collection = 'c2'")
        stacbatch.emit_json_tree(stacbatch.open_stage(stage), out)
        names = sorted(p.removeprefix(f"/{root}/") for p in mem.find(root))
        assert [n for n in names if n.startswith("c2/")] == ["c2/collection.json"]
        items = [n for n in names if n.endswith(".json") and not n.endswith(("catalog.json", "collection.json"))]
        assert len(items) == 21
    finally:
        if mem.exists(root):
            mem.rm(root, recursive=True)


def test_tree_on_fsspec_refuses_a_foreign_folder(tmp_path: Path) -> None:
    import fsspec

    from stacbatch.errors import InputError

    mem = fsspec.filesystem("memory")
    stage = _stage(tmp_path, ITEMS[:3])
    foreign = f"foreign-{tmp_path.name}"
    mem.pipe(f"{foreign}/notes.txt", b"keep me")
    try:
        with pytest.raises(InputError, match="not an earlier stacbatch tree"):
            stacbatch.emit_json_tree(stacbatch.open_stage(stage), f"memory://{foreign}")
        assert mem.cat(f"{foreign}/notes.txt") == b"keep me"
    finally:
        mem.rm(foreign, recursive=True)


# -- 2. atomic outputs under SIGKILL -------------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["emit:file_partial", "emit:file_before_switch"])
@pytest.mark.parametrize("target", ["all.ndjson", "all.ndjson.gz", "split", "gp"])
def test_killed_file_emit_keeps_the_previous_output(tmp_path: Path, point: str, target: str) -> None:
    stage = _stage(tmp_path, ITEMS)
    fmt = "geoparquet" if target == "gp" else "ndjson"
    out = tmp_path / "out" / target
    assert run("emit", "--stage", stage, "-f", fmt, "--to", str(out)).returncode == 0
    before = _snapshot(out.parent)
    assert run("delete", "--stage", stage, "--where", "id LIKE 'i1%'").returncode == 0
    proc = run("emit", "--stage", stage, "-f", fmt, "--to", str(out), env={"STACBATCH_CRASH_AT": point})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    after = {k: v for k, v in _snapshot(out.parent).items() if ".tmp-" not in k}
    assert after == before
    # The next emit clears the killed one's temporary file and writes the new output.
    assert run("emit", "--stage", stage, "-f", fmt, "--to", str(out)).returncode == 0
    names = list(_snapshot(out.parent))
    assert not [n for n in names if ".tmp-" in n] and _snapshot(out.parent) != before


@pytest.mark.parametrize("point", ["emit:tree_partial", "emit:tree_before_switch", "emit:tree_after_switch"])
def test_killed_tree_emit_leaves_the_old_tree_or_the_new(tmp_path: Path, point: str) -> None:
    stage = _stage(tmp_path, ITEMS)
    out = tmp_path / "tree"
    assert run("emit", "--stage", stage, "-f", "json", "--to", str(out)).returncode == 0
    old = _snapshot(out)
    assert run("update", "--stage", stage, "--where", "true", "--set", "properties.v=2").returncode == 0
    proc = run("emit", "--stage", stage, "-f", "json", "--to", str(out), env={"STACBATCH_CRASH_AT": point})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    now = _snapshot(out)
    if point == "emit:tree_after_switch":
        assert set(now) == set(old) and now != old
        assert all(
            orjson.loads(now[str(p.relative_to(out))])["properties"]["v"] == 2 for p in _walk(out / "catalog.json")
        )
    else:
        assert now == old
    assert run("emit", "--stage", stage, "-f", "json", "--to", str(out)).returncode == 0
    _no_hidden_folders(tmp_path)


def test_tree_switch_without_exchange_recovers_the_old_tree(tmp_path: Path) -> None:
    """Where two folders cannot be exchanged atomically the switch is two renames; a kill between them leaves the
    old tree beside the target, and the next emit puts it back before writing."""
    stage = _stage(tmp_path, ITEMS)
    out = tmp_path / "tree"
    stacbatch.emit_json_tree(stacbatch.open_stage(stage), str(out))
    old = _snapshot(out)
    script = (
        "import sys, stacbatch\n"
        "from stacbatch.emit import _swap\n"
        "_swap.exchange = lambda a, b: False\n"
        "stacbatch.emit_json_tree(stacbatch.open_stage(sys.argv[1]), sys.argv[2])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, stage, str(out)],
        env={**os.environ, "STACBATCH_CRASH_AT": "emit:tree_between_renames"},
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not out.exists()
    from stacbatch.emit._swap import recover

    recover(str(out))
    assert _snapshot(out) == old
    _no_hidden_folders(tmp_path)


# -- 3. ids that make long or unsafe paths --------------------------------------------------------------------------

LONG = "x" * 300
WIDE = "é" * 120  # 240 bytes in UTF-8, 720 once percent-encoded


def test_long_item_ids_get_short_stable_names(tmp_path: Path) -> None:
    """Ids too long for a file name are cut and given a hash of the whole id: unique, stable, within 255 bytes;
    the whole tree is written."""
    ids = [LONG, LONG + "y", WIDE, "short"]
    items = [item(i, collection="c1") for i in ids] + [item(i, None) for i in ids]
    stage = _stage(tmp_path, items)
    out = tmp_path / "tree"
    proc = run("emit", "--stage", stage, "-f", "json", "--to", str(out))
    assert proc.returncode == 0, proc.stderr
    assert all(len(os.fsencode(p.name)) <= 255 for p in out.rglob("*"))
    hrefs = _walk(out / "catalog.json")
    docs = [orjson.loads(p.read_bytes()) for p in hrefs]
    assert sorted((d["id"], d.get("collection", "")) for d in docs) == sorted(
        (i["id"], i.get("collection", "")) for i in items
    )
    assert (out / "c1" / "short" / "short.json").is_file()  # short ids keep their plain names
    assert run("emit", "--stage", stage, "-f", "json", "--to", str(out)).returncode == 0
    assert _walk(out / "catalog.json") == hrefs  # stable


def test_long_collection_ids_get_short_names(tmp_path: Path) -> None:
    """The same for collection ids: tree folders, NDJSON and GeoParquet file names."""
    long_coll = "C" * 300
    items = [item(i, collection=c) for c in (long_coll, long_coll + "D", "c1") for i in ("a", LONG)]
    stage = _stage(tmp_path, items)
    out = tmp_path / "tree"
    proc = run("emit", "--stage", stage, "-f", "json", "--to", str(out))
    assert proc.returncode == 0, proc.stderr
    assert all(len(os.fsencode(p.name)) <= 255 for p in out.rglob("*"))
    docs = [orjson.loads(p.read_bytes()) for p in _walk(out / "catalog.json")]
    assert sorted((d["id"], d["collection"]) for d in docs) == sorted((i["id"], i["collection"]) for i in items)
    for fmt, to in (("ndjson", "nd"), ("geoparquet", "gp")):
        proc = run("emit", "--stage", stage, "-f", fmt, "--to", str(tmp_path / to))
        assert proc.returncode == 0, proc.stderr
        names = [p.name for p in (tmp_path / to).iterdir()]
        assert len(names) == 3 and all(len(n) <= 255 for n in names)


def test_unsafe_ids_stay_inside_the_tree(tmp_path: Path) -> None:
    """Path separators, dot names, control characters and the tree's own file names never escape or clash."""
    odd = ["../../escape", "a/b", "..", ".", "tab\there", "nl\nhere", "nul\x00here", "catalog.json", "collection.json"]
    items = [item(i, collection="c1") for i in odd] + [item(i, None) for i in odd]
    items.append(item("x", collection="catalog.json"))
    stage = _stage(tmp_path, items)
    out = tmp_path / "deep" / "tree"
    proc = run("emit", "--stage", stage, "-f", "json", "--to", str(out))
    assert proc.returncode == 0, proc.stderr
    inside = [out, tmp_path / "stage"]
    for p in tmp_path.rglob("*"):
        assert p.parent == tmp_path or any(d == p or d in p.parents for d in inside), p
    docs = [orjson.loads(p.read_bytes()) for p in _walk(out / "catalog.json")]
    assert sorted((d["id"], d.get("collection", "")) for d in docs) == sorted(
        (i["id"], i.get("collection", "")) for i in items
    )


# -- 4. targets inside the stage ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "where"),
    [
        ("json", "."),
        ("json", "items"),
        ("json", "items/new"),
        ("ndjson", "items"),
        ("ndjson", "all.ndjson"),
        ("ndjson", "items/collection=c1/x.ndjson"),
        ("geoparquet", "out"),
    ],
)
def test_emit_into_the_stage_is_refused(tmp_path: Path, fmt: str, where: str) -> None:
    stage = _stage(tmp_path, ITEMS)
    before = _snapshot(tmp_path)
    to = os.path.normpath(os.path.join(stage, where))
    err = _one_line_error(run("emit", "--stage", stage, "-f", fmt, "--to", to))
    assert "stage" in err
    assert _snapshot(tmp_path) == before


def test_tree_that_would_replace_the_stage_is_refused_even_forced(tmp_path: Path) -> None:
    stage = _stage(tmp_path, ITEMS)
    before = _snapshot(tmp_path)
    err = _one_line_error(run("emit", "--stage", stage, "-f", "json", "--to", str(tmp_path), "--force"))
    assert "stage" in err
    assert _snapshot(tmp_path) == before


# -- 2b. a kill from outside, at whatever moment the writing is seen ---------------------------------------------


def _kill_when(proc: subprocess.Popen[bytes], seen: Callable[[], bool]) -> int:
    """SIGKILL ``proc`` as soon as ``seen()``; its exit code (-9 when killed)."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if seen():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.0005)
    return proc.wait(timeout=120)


def _emit_popen(stage: str, fmt: str, to: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "stacbatch", "emit", "--stage", stage, "-f", fmt, "--to", str(to)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


BIG = [item(f"b{n:05d}", collection=f"c{n % 2}", properties={"datetime": None, "pad": "p" * 1500}) for n in range(8000)]


def test_sigkill_while_ndjson_is_written_leaves_the_old_file_or_the_new(tmp_path: Path) -> None:
    stage = _stage(tmp_path, BIG)
    out = tmp_path / "out" / "all.ndjson"
    assert run("emit", "--stage", stage, "-f", "ndjson", "--to", str(out)).returncode == 0
    old = out.read_bytes()
    assert run("update", "--stage", stage, "--where", "true", "--set", "properties.v=2").returncode == 0
    assert run("emit", "--stage", stage, "-f", "ndjson", "--to", str(tmp_path / "new.ndjson")).returncode == 0
    new = (tmp_path / "new.ndjson").read_bytes()

    def writing() -> bool:  # bytes of the new output have appeared, wherever they are written
        return out.stat().st_size != len(old) or any(p.stat().st_size > 0 for p in out.parent.glob("*.tmp-*"))

    assert _kill_when(_emit_popen(stage, "ndjson", out), writing) == -signal.SIGKILL
    assert out.read_bytes() in (old, new)


def test_sigkill_while_a_tree_is_written_leaves_the_old_tree_or_the_new(tmp_path: Path) -> None:
    stage = _stage(tmp_path, BIG[:3000])
    out = tmp_path / "tree"
    assert run("emit", "--stage", stage, "-f", "json", "--to", str(out)).returncode == 0
    old = _snapshot(out)
    assert run("update", "--stage", stage, "--where", "true", "--set", "properties.v=2").returncode == 0
    assert run("emit", "--stage", stage, "-f", "json", "--to", str(tmp_path / "new")).returncode == 0
    new = _snapshot(tmp_path / "new")
    probe = out / "c0" / "b00000" / "b00000.json"
    first = probe.stat().st_mtime_ns

    def writing() -> bool:  # a temporary tree with some items in it, or the old tree being overwritten
        tmp = [p for p in tmp_path.iterdir() if p.name.startswith(".tree")]
        return bool(tmp and any((tmp[0] / "c0").glob("b0050*"))) or probe.stat().st_mtime_ns != first

    assert _kill_when(_emit_popen(stage, "json", out), writing) == -signal.SIGKILL
    now = {k: v for k, v in _snapshot(out).items() if k != MARKER}
    assert now in ({k: v for k, v in old.items() if k != MARKER}, {k: v for k, v in new.items() if k != MARKER})
