"""Small builders shared by tests."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson


def item(
    item_id: str, collection: str | None = "c1", dt: str | None = "2021-06-01T10:00:00Z", **extra: Any
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
        "bbox": [0, 0, 1, 1],
        "properties": {"datetime": dt},
        "links": [],
        "assets": {"data": {"href": f"https://example.com/{item_id}.tif"}},
    }
    if collection is not None:
        doc["collection"] = collection
    doc.update(copy.deepcopy(extra))
    return doc


def write_ndjson(path: Path, items: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(i) + b"\n" for i in items))
    return path


def read_ndjson(path: Path) -> list[Any]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def collection(cid: str, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "Collection",
        "id": cid,
        "stac_version": "1.1.0",
        "description": "d",
        "license": "CC0-1.0",
        "extent": {"spatial": {"bbox": [[0, 0, 1, 1]]}, "temporal": {"interval": [[None, None]]}},
        "links": [],
    }
    doc.update(copy.deepcopy(extra))
    return doc


def cli(
    *args: str,
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    cwd: Path | str | None = None,
    timeout: float = 300,
    **kw: Any,
) -> subprocess.CompletedProcess[str]:
    """``stacbatch ARGS...`` as a user runs it (a new process, this environment plus ``env``, less ``unset``);
    stdout and stderr captured as text. The one way tests run the command line."""
    environ = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
    return subprocess.run(
        [sys.executable, "-m", "stacbatch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        cwd=cwd,
        **kw,
    )
