"""A run's record: ``runs/<run-id>/summary.json`` and ``failures.ndjson`` (written as failures happen)."""

from __future__ import annotations

from typing import Any

import orjson

from stacbatch.engine import _fs
from stacbatch.engine._layout import RUNS, new_run_id, now_rfc3339


class Run:
    def __init__(self, fs: Any, root: str, command: str, args: dict[str, Any], run_id: str | None = None) -> None:
        self.fs = fs
        self.root = root
        self.id = run_id or new_run_id()
        self.command = command
        self.args = args
        self.started = now_rfc3339()
        self.dir = _fs.join(root, RUNS, self.id)
        self.failures_path = _fs.join(self.dir, "failures.ndjson")
        self.failure_count = 0
        self.first_failures: list[dict[str, Any]] = []
        self._failures: Any = None
        fs.makedirs(self.dir, exist_ok=True)

    def fail(self, record: dict[str, Any]) -> None:
        if self._failures is None:
            self._failures = self.fs.open(self.failures_path, "wb")
        self._failures.write(orjson.dumps(record) + b"\n")
        self.failure_count += 1
        if len(self.first_failures) < 5:
            self.first_failures.append(record)

    def finish(self, status: str, counts: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
        if self._failures is not None:
            self._failures.close()
            self._failures = None
        summary: dict[str, Any] = {
            "run_id": self.id,
            "command": self.command,
            "args": self.args,
            "started": self.started,
            "finished": now_rfc3339(),
            "status": status,
            "counts": counts,
            "failures_file": f"{RUNS}/{self.id}/failures.ndjson" if self.failure_count else None,
        }
        if extra:
            summary.update(extra)
        _fs.atomic_write_bytes(
            self.fs,
            _fs.join(self.dir, "summary.json"),
            orjson.dumps(summary, option=orjson.OPT_INDENT_2),
        )
        return summary


def format_failure(rec: dict[str, Any]) -> str:
    """One line: where, which item, which field, what is wrong, what to do."""
    where = rec.get("source", "?")
    if "line" in rec:
        where += f":{rec['line']}"
    if "row" in rec:
        where += f" record {rec['row']}"
    parts = [where]
    if "id" in rec:
        parts.append(f"item {rec['id']!r}")
    if "field" in rec:
        parts.append(f"field {rec['field']}")
    msg = ": ".join(parts) + f": {rec.get('reason', '')}"
    if rec.get("hint"):
        msg += f" ({rec['hint']})"
    return msg
