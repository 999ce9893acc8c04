from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The shared corpus sits beside the checkout (../shared); STACBATCH_SHARED overrides.
SHARED = Path(os.environ.get("STACBATCH_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus" / "real"
#: CI has the corpus and requires it (.ci/run sets this): a missing one fails the run instead of skipping tests.
REQUIRE_SHARED = os.environ.get("STACBATCH_REQUIRE_SHARED") == "1"
_SKIP_REASON = "needs the shared corpus"
#: a test (or module) that reads ../shared: skipped with a clear reason in a clone without it
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"{_SKIP_REASON}: {SHARED} is missing (set STACBATCH_SHARED to its path)"
)


def optional_kernel() -> Any:
    """``stacbatch.kernel._kernel``, or None in a build without a C compiler (``make test``, which sets
    STACBATCH_REQUIRE_KERNEL=1, fails instead: a kernel that did not build would otherwise pass unseen)."""
    try:
        from stacbatch.kernel import _kernel
    except ImportError:
        if os.environ.get("STACBATCH_REQUIRE_KERNEL") == "1":
            raise
        return None
    return _kernel


#: a test of the C kernel itself: skipped in a build without one
needs_kernel = pytest.mark.skipif(optional_kernel() is None, reason="this build has no C kernel (no C compiler)")


def shared_path(*parts: str) -> Path:
    """A path under the shared folder; the test is skipped (in CI: fails) when it is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        if REQUIRE_SHARED:
            pytest.fail(f"{path} is missing and STACBATCH_REQUIRE_SHARED=1")
        pytest.skip(f"{_SKIP_REASON}: {path} is missing (set STACBATCH_SHARED to its path)")
    return path


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_SHARED and not CORPUS.is_dir():
        pytest.exit(f"STACBATCH_REQUIRE_SHARED=1 but there is no corpus at {CORPUS}", returncode=1)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if _SKIP_REASON in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} test(s) skipped: they need the shared corpus ({SHARED}); CI runs them "
            "(STACBATCH_SHARED=PATH runs them here)",
            yellow=True,
        )


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
