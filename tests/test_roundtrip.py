"""Lossless: load -> emit gives back every item equal to its input (canonical JSON equality), file by file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import CORPUS, canon, corpus_files, needs_shared

import stacbatch
from stacbatch.stage import DEFAULT_BATCH_SIZE

#: Corpus items that must fail: their geometry cannot be read (a Polygon whose rings are MultiPolygon-deep).
BAD_GEOMETRY_IDS = {"badGeometryItem"}


def _expected(path: Path) -> tuple[dict[tuple[str | None, str], Any], int]:
    """Last occurrence of each (collection, id) wins, as in the stage; items without a usable id, or with an
    unreadable geometry, are failures."""
    items: dict[tuple[str | None, str], Any] = {}
    failing = 0
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        obj = orjson.loads(line)
        if not isinstance(obj.get("id"), str) or not obj["id"] or obj["id"] in BAD_GEOMETRY_IDS:
            failing += 1
            continue
        items[(obj.get("collection"), obj["id"])] = obj
    return items, failing


def _roundtrip(path: Path, tmp_path: Path, batch_size: int) -> None:
    stage = str(tmp_path / "stage")
    res = stacbatch.load_to_stage(stage, [str(path)], batch_size=batch_size, workers=1)
    expected, failing = _expected(path)
    assert res.failed == failing
    out = tmp_path / "out.ndjson"
    stacbatch.emit_ndjson(stacbatch.open_stage(stage), str(out))
    got = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(got) == len(expected)
    for item in got:
        want = expected[(item.get("collection"), item["id"])]
        assert canon(item) == canon(want), item["id"]
        # Not just equal: the same datetime strings, byte for byte.
        assert item.get("properties") == want.get("properties")


ITEM_FILES = corpus_files("items")


@needs_shared
@pytest.mark.parametrize("batch_size", [1, 2, DEFAULT_BATCH_SIZE])
@pytest.mark.parametrize("path", ITEM_FILES, ids=lambda p: p.name)
def test_items_roundtrip(path: Path, tmp_path: Path, batch_size: int) -> None:
    _roundtrip(path, tmp_path, batch_size)


OTHER_FILES = corpus_files("items_legacy") + corpus_files("items_invalid")


@needs_shared
@pytest.mark.parametrize("path", OTHER_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_legacy_and_invalid_roundtrip(path: Path, tmp_path: Path) -> None:
    _roundtrip(path, tmp_path, DEFAULT_BATCH_SIZE)


def test_corpus_is_there() -> None:
    # The fidelity suite must not pass by skipping everything on a machine where ../shared is laid out.
    if (CORPUS.parent.parent / "reference").is_dir():
        assert ITEM_FILES, f"no corpus items under {CORPUS}"
