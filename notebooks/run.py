"""Run the notebooks top to bottom on the bundled sample and keep them with their outputs.

    python notebooks/run.py OUT_DIR     # writes OUT_DIR/<name>.ipynb, executed; exit 1 if a cell fails

The tests run this (``tests/test_notebooks.py``) and so does ``make docs``, which renders the executed copies. Each
notebook gets two stages built from ``samples/`` (``STACBATCH_STAGE``, and ``STACBATCH_STAGE_BEFORE``: the same
sample before an update and a delete, for the diff), so it runs anywhere without ``make demo`` first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _stacbatch(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "stacbatch", "-q", *args], check=True, cwd=ROOT)


def build_stages(work: Path) -> tuple[Path, Path]:
    """The sample staged twice: ``before``, and ``after`` (one update and one delete later)."""
    before, after = work / "before", work / "after"
    collections = [str(p) for p in sorted((ROOT / "samples" / "collections").glob("*.json"))]
    for stage in (before, after):
        _stacbatch("load", str(ROOT / "samples" / "demo-items.ndjson.gz"), *collections, "--stage", str(stage))
    _stacbatch("update", "--stage", str(after), "--where", '"eo:cloud_cover" > 80', "--set", "properties.cloudy=true")
    _stacbatch("delete", "--stage", str(after), "--where", "datetime < TIMESTAMPTZ '2019-01-01'")
    return before, after


def run(out: Path) -> list[str]:
    """Execute every notebook into ``out``; the names of those that failed."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    out.mkdir(parents=True, exist_ok=True)
    failed = []
    with tempfile.TemporaryDirectory() as tmp:
        before, after = build_stages(Path(tmp))
        os.environ.update(STACBATCH_STAGE=str(after), STACBATCH_STAGE_BEFORE=str(before))
        for path in NOTEBOOKS:
            nb = nbformat.read(path, as_version=4)
            client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp}})
            try:
                client.execute()
            except CellExecutionError as err:
                failed.append(f"{path.name}: {str(err).strip().splitlines()[-1]}")
            nbformat.write(nb, out / path.name)
    return failed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.split("\n\n")[1])
    bad = run(Path(sys.argv[1]))
    for line in bad:
        print(f"notebook failed: {line}", file=sys.stderr)
    sys.exit(1 if bad else 0)
