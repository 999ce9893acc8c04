"""The notebooks run top to bottom on the bundled sample (``notebooks/run.py``, as ``make docs`` runs them) and
draw their plots."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("nbclient", "ipykernel", "matplotlib")),
    reason="the notebook extra is not installed (pip install -e '.[notebook]'; make test installs it)",
)


def test_every_notebook_runs_and_plots(tmp_path: Path) -> None:
    # A process of its own: Jupyter's client libraries warn in ways this suite's filterwarnings=error would raise.
    proc = subprocess.run(
        [sys.executable, str(ROOT / "notebooks" / "run.py"), str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    plots = {}
    for path in sorted(tmp_path.glob("*.ipynb")):
        outputs = [o for c in json.loads(path.read_text())["cells"] for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.get("output_type") == "error"], path.name
        plots[path.name] = sum("image/png" in o.get("data", {}) for o in outputs)
    assert plots == {"analysis.ipynb": 4, "quickstart.ipynb": 1}
