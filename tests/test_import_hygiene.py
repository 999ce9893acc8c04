"""Imports that must stay deferred: ``import stacbatch`` is cheap (PEP 562 names), parse workers do not load DuckDB,
and the layers stay as ``[tool.importlinter]`` says (``make lint`` runs the contracts; this checks the laziness)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("duckdb", "polars", "pystac", "stac_geoparquet", "pyarrow", "shapely", "aiohttp")


def _loaded(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_import_stacbatch_loads_no_heavy_library() -> None:
    loaded = _loaded("import stacbatch; stacbatch.__version__")
    assert not loaded & set(HEAVY)


@pytest.mark.parametrize("module", ["stacbatch.stage._parse", "stacbatch.stage._writer"])
def test_parse_and_write_workers_do_not_load_duckdb(module: str) -> None:
    """What the fork server imports for ``load``'s workers (``cli._prestart``): DuckDB is the loading process's."""
    loaded = _loaded(f"import {module}")
    assert "duckdb" not in loaded
    assert "stacbatch.mapping" not in loaded  # a mapped unit brings its mapper along (``RecordsUnit.run``)


def test_the_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    import stacbatch

    assert stacbatch.__version__ == version("stacbatch")
