"""The benchmarks page's tables from ``make bench``'s results: one dated table per operation.

    python -m bench.tables                        # the latest bench/out/results-*.json, as Markdown
    python -m bench.tables bench/out/results-X.json [more.json ...]   # several runs (e.g. 100k, then 1M)

Each table says when, with which command and on which machine its figures were measured, and puts every other
tool's figure beside stacbatch's as a ratio. docs/benchmarks.md holds the output of the last run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"

#: operation -> the result steps it covers (prefixes of ``step``)
OPERATIONS: list[tuple[str, tuple[str, ...]]] = [
    ("Load NDJSON into a stage", ("load (NDJSON",)),
    ("Emit NDJSON", ("emit ndjson",)),
    ("Emit a static JSON tree", ("emit json tree",)),
    ("Queries over properties and assets", ("query ", "update --where 1%: select")),
    ("Edits, diff and merge", ("update", "delete", "load 0.5%", "diff", "merge", "extend")),
    ("Validation", ("validate",)),
    ("Load from a STAC API", ("API load",)),
    ("Tables through a mapping", ("CSV + mapping",)),
]


def _secs(s: float) -> str:
    return f"{s:,.3f}" if s < 1 else f"{s:,.1f}"


def _ratio(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    if row["tool"] == "stacbatch":
        return ""
    if not row["ok"] or not row["items_per_s"]:
        return "(failed)"
    same = [r for r in rows if r["items"] == row["items"] and r["tool"] == "stacbatch" and r["ok"]]
    if not any(r["step"] == row["step"] for r in same):  # a sample of the same items: rates compare
        same += [r for r in rows if r["tool"] == "stacbatch" and r["ok"] and r["step"] == row["step"]]
    ours = next((r for r in same if r["step"] == row["step"]), None) or next(
        (r for r in same if r["step"].split(" (")[0] == row["step"].split(" (")[0]), None
    )
    if ours is None or not ours["items_per_s"]:
        return ""
    x = ours["items_per_s"] / row["items_per_s"]
    return f"{x:,.1f}x faster" if x >= 1 else f"{1 / x:,.1f}x slower"


def tables(runs: list[dict[str, Any]]) -> str:
    out: list[str] = []
    for title, prefixes in OPERATIONS:
        blocks = []
        for run in runs:
            rows = [r for r in run["rows"] if r["step"].startswith(prefixes)]
            if rows:
                blocks.append((run, rows))
        if not blocks:
            continue
        out.append(f"### {title}\n")
        for run, rows in blocks:
            when = run["started"][:16].replace("T", " ")
            out.append(
                f"{when} UTC · `{run.get('command', 'python -m bench.run')}` · {run.get('machine', 'this machine')}\n"
            )
            out.append("| step | items | tool | seconds | items/s | peak RSS | stacbatch is |")
            out.append("| --- | ---: | --- | ---: | ---: | ---: | ---: |")
            for r in rows:
                bold = "**" if r["tool"] == "stacbatch" else ""
                out.append(
                    f"| {r['step']} | {r['items']:,} | {bold}{r['tool']}{bold} | {_secs(r['seconds'])} | "
                    f"{bold}{r['items_per_s']:,}{bold} | {r['peak_mb']:,} MB | {_ratio(r, rows)} |"
                )
            out.append("")
    return "\n".join(out)


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or sorted(OUT.glob("results-*.json"))[-1:]
    if not paths:
        sys.exit("no bench/out/results-*.json: run `make bench` first")
    print(tables([json.loads(p.read_text()) for p in paths]))


if __name__ == "__main__":
    main()
