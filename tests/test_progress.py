"""Progress on every long command: phases with totals from the library, rich bars on a terminal only."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import stacbatch
from stacbatch.cli._progress import Bars
from stacbatch.edit import delete, diff, merge, update
from stacbatch.edit._ops import parse_cli_ops
from stacbatch.engine._progress import Progress, current, reporting

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "demo-items.ndjson.gz"


class Recorder(Progress):
    """Every report, in order: (phase name, total) and the units advanced in it."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, int | None]] = []
        self.done: list[int] = []

    def phase(self, name: str, total: int | None = None, unit: str = "items") -> None:
        self.phases.append((name, total))
        self.done.append(0)

    def advance(self, n: int = 1) -> None:
        self.done[-1] += n

    def total(self, total: int | None) -> None:
        self.phases[-1] = (self.phases[-1][0], total)

    def of(self, prefix: str) -> list[tuple[str, int | None, int]]:
        return [(n, t, d) for (n, t), d in zip(self.phases, self.done, strict=True) if n.startswith(prefix)]


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> str:
    stage = str(tmp_path_factory.mktemp("progress") / "stage")
    stacbatch.load_to_stage(stage, [str(SAMPLE)])
    return stage


def test_no_progress_is_reported_anywhere_by_default() -> None:
    assert type(current()) is Progress


def test_load_reports_every_item_read(tmp_path: Path) -> None:
    rec = Recorder()
    with reporting(rec):
        res = stacbatch.load_to_stage(str(tmp_path / "s"), [str(SAMPLE)])
    assert [n for n, _ in rec.phases] == ["load: read", "load: write partitions"]
    assert rec.done[0] == res.read > 0


@pytest.mark.parametrize("fmt", ["ndjson", "json", "geoparquet"])
def test_emit_counts_to_its_total(staged: str, tmp_path: Path, fmt: str) -> None:
    emit = {
        "ndjson": stacbatch.emit_ndjson,
        "json": stacbatch.emit_json_tree,
        "geoparquet": stacbatch.emit_geoparquet,
    }[fmt]
    rec = Recorder()
    target = tmp_path / ("out.parquet" if fmt == "geoparquet" else "out")
    with reporting(rec):
        res = emit(stacbatch.open_stage(staged), str(target))
    ((name, total, done),) = rec.of("emit")
    assert name == f"emit {fmt}" and total == done == res.items > 0


def test_update_delete_diff_merge_report_phases(tmp_path: Path) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    stacbatch.load_to_stage(a, [str(SAMPLE)])
    stacbatch.load_to_stage(b, [str(SAMPLE)])
    rec = Recorder()
    with reporting(rec):
        up = update(b, parse_cli_ops(["properties.note=1"], [], []), where="id LIKE '%1'")
        de = delete(b, where="id LIKE '%2'")
        d = diff(a, b, out=str(tmp_path / "changes.parquet"))
        merge(a, str(tmp_path / "changes.parquet"))
    (_, total, done) = rec.of("update: rewrite files")[0]
    assert total == done == up.selected > 0
    (_, total, done) = rec.of("delete: rewrite files")[0]
    assert total == done == de.selected > 0
    (_, total, done) = rec.of("diff: write changes")[0]
    assert total == done == d.changes_written > 0
    assert rec.of("merge: compare") and rec.of("merge: stage")


def test_bars_show_count_rate_eta_and_detail() -> None:
    out = io.StringIO()
    bars = Bars(Console(file=out, force_terminal=True, width=160))
    bars.phase("load: read", total=1000)
    bars.advance(500)
    bars.detail("5 pages · 6 requests · 1 retries")
    bars.finish()
    text = out.getvalue()
    assert "load: read" in text and "500/1000" in text and "items/s" in text and "ETA" in text
    assert "6 requests" in text


def _on_a_terminal(*args: str) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal (stdout a pipe); its exit code and what the terminal got."""
    master, slave = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stacbatch", *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(slave)
    got = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            got += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=120)
    assert proc.stdout is not None
    proc.stdout.close()
    os.close(master)
    return proc.returncode, got.decode("utf-8", "replace")


def test_a_terminal_gets_bars_and_the_summary(staged: str, tmp_path: Path) -> None:
    rc, text = _on_a_terminal("emit", "--stage", staged, "--to", str(tmp_path / "out"), "--format", "ndjson")
    assert rc == 0, text
    total = stacbatch.open_stage(staged).manifest.item_count()
    assert f"{total}/{total}" in text and "ETA" in text  # the bar, at its end
    assert text.rstrip().splitlines()[-1].endswith("items/s)")  # and the summary, after the bar is gone


def test_quiet_or_not_a_terminal_gets_no_bars(staged: str, tmp_path: Path) -> None:
    rc, text = _on_a_terminal("-q", "emit", "--stage", staged, "--to", str(tmp_path / "q"), "--format", "ndjson")
    assert rc == 0 and text.strip() == ""
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "stacbatch",
            "emit",
            "--stage",
            staged,
            "--to",
            str(tmp_path / "p"),
            "--format",
            "ndjson",
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0 and p.stderr.startswith("emit ndjson:") and len(p.stderr.splitlines()) == 1
    assert "\x1b[" not in p.stderr and "\r" not in p.stderr
