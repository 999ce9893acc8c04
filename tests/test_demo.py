"""``make demo`` end to end, in a copy of the samples: every step succeeds and the gated emit leaves out exactly the
planted invalid items."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_the_gate_leaves_out_the_planted_items(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STACBATCH_SCHEMA_CACHE": str(tmp_path / "no-cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "stacbatch.demo"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    invalid = [json.loads(s)["id"] for s in (tmp_path / "demo-out" / "invalid-items.ndjson").read_text().splitlines()]
    assert len(invalid) == 5 and all(i.startswith("INVALID-") for i in invalid)
    tree = tmp_path / "demo-out" / "catalog"
    written = {json.loads(p.read_bytes())["id"] for p in tree.rglob("*.json") if p.name not in ("catalog.json",)}
    assert len(written) > 2_000 and not (written & set(invalid)), "an invalid item reached the catalog"
