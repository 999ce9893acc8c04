from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The shared corpus sits beside the checkout (../shared); STACBATCH_SHARED overrides.
SHARED = Path(os.environ.get("STACBATCH_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus" / "real"


def canon(value: Any) -> Any:
    """Canonical JSON equality: key order ignored, 1 == 1.0, nothing else forgiven (True != 1)."""
    if isinstance(value, dict):
        return {"__obj__": sorted((k, canon(v)) for k, v in value.items())}
    if isinstance(value, list):
        return {"__arr__": [canon(v) for v in value]}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return {"__lit__": repr(value)}
    if isinstance(value, float) and value.is_integer():
        return {"__num__": repr(int(value))}
    return {"__num__": repr(value)}


def corpus_files(sub: str) -> list[Path]:
    folder = CORPUS / sub
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.ndjson"))


@pytest.fixture
def tmp_stage(tmp_path: Path) -> str:
    return str(tmp_path / "stage")
