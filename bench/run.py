"""``make bench``: stacbatch next to the tools users would otherwise pick, in one run, as ratios.

    python -m bench.run                 # 100k and 1M items, every tool (long: stac-geoparquet needs ~15 min at 1M)
    python -m bench.run --quick         # 10k and 100k items
    python -m bench.run --sizes 50000   # chosen sizes

Figures are wall-clock items/s and peak RSS of the whole process tree (sampled every 50 ms), on this machine,
now. Nothing here is asserted: compare ratios within one run, not across machines.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench._measure import Measurement, discard, empty_trash, run
from bench.edits import bench_edits
from bench.generate import write_collections, write_ndjson

OUT = Path(__file__).resolve().parent / "out"
PY = sys.executable
BIN = Path(sys.executable).parent


@dataclass
class Row:
    step: str
    tool: str
    items: int
    m: Measurement

    @property
    def rate(self) -> float:
        return self.items / self.m.seconds if self.m.returncode == 0 and self.m.seconds else 0.0


def _tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def _fresh(path: Path) -> Path:
    return discard(path)


def bench_size(
    n: int, rows: list[Row], anchors: bool, tree_max: int, edits: bool = True, validate: bool = True
) -> None:
    src = OUT / f"items-{n}.ndjson"
    if not src.exists():
        print(f"generating {n:,} items ...", file=sys.stderr, flush=True)
        write_ndjson(src, n)
    work = OUT / f"work-{n}"
    work.mkdir(parents=True, exist_ok=True)
    stage = _fresh(work / "stage")

    def add(step: str, tool: str, m: Measurement) -> None:
        row = Row(step, tool, n, m)
        rows.append(row)
        status = "ok" if m.returncode == 0 else f"FAILED ({m.returncode}): {m.stderr.strip().splitlines()[-1:]}"
        print(
            f"  {step:<24} {tool:<28} {n:>9,} items {_secs(m.seconds):>7} s {row.rate:>10,.0f} items/s  "
            f"{m.peak_mb:>7,.0f} MB  {status}",
            file=sys.stderr,
            flush=True,
        )

    sb = [_tool("stacbatch"), "-q"]
    add("load (NDJSON->stage)", "stacbatch", run([*sb, "load", str(src), "--stage", str(stage)]))
    sgp = _fresh(work / "sgp.parquet")
    if anchors:
        add(
            "load (NDJSON->parquet)",
            "stac-geoparquet 0.8",
            run(
                [
                    PY,
                    "-c",
                    (
                        "import sys; from stac_geoparquet.arrow import parse_stac_ndjson_to_parquet as p; "
                        "p(sys.argv[1], sys.argv[2])"
                    ),
                    str(src),
                    str(sgp),
                ]
            ),
        )
    bench_queries(n, stage, sgp if sgp.exists() else None, add)
    add(
        "emit ndjson",
        "stacbatch",
        run([*sb, "emit", "--stage", str(stage), "--format", "ndjson", "--to", str(_fresh(work / "sb.ndjson"))]),
    )
    if n <= tree_max:
        add(
            "emit json tree",
            "stacbatch",
            run([*sb, "emit", "--stage", str(stage), "--format", "json", "--to", str(_fresh(work / "sb-tree"))]),
        )
    if validate:
        from bench.validate import bench_validate

        def add_n(step: str, tool: str, items: int, m: Measurement) -> None:
            rows.append(Row(step, tool, items, m))
            print(
                f"  {step:<24} {tool:<28} {items:>9,} items {_secs(m.seconds):>7} s  rc={m.returncode}", file=sys.stderr
            )

        bench_validate(n, src, stage, sb, add_n)
    if edits:
        bench_edits(n, stage, work, sb, add)
    if not anchors:
        return
    add(
        "load (NDJSON->parquet)",
        "rustac CLI translate",
        run([_tool("rustac"), "translate", str(src), str(_fresh(work / "rustac.parquet"))]),
    )
    if sgp.exists():
        add(
            "emit ndjson",
            "stac-geoparquet 0.8",
            run(
                [
                    PY,
                    "-c",
                    (
                        "import sys, pyarrow.parquet as pq; "
                        "from stac_geoparquet.arrow import stac_table_to_ndjson as f; "
                        "f(pq.read_table(sys.argv[1]), sys.argv[2])"
                    ),
                    str(sgp),
                    str(_fresh(work / "sgp.ndjson")),
                ]
            ),
        )
    if (work / "rustac.parquet").exists():
        add(
            "emit ndjson",
            "rustac CLI translate",
            run([_tool("rustac"), "translate", str(work / "rustac.parquet"), str(_fresh(work / "rustac.ndjson"))]),
        )
    if n <= min(tree_max, 20_000):  # pystac's save grows worse than linearly; 10k-20k is its practical size
        add(
            "emit json tree",
            "pystac 1.x save",
            run([PY, "-m", "bench.pystac_tree", str(src), str(_fresh(work / "pystac-tree"))]),
        )


def bench_queries(n: int, stage: Path, sgp: Path | None, add: Callable[[str, str, Measurement], None]) -> None:
    """Queries over properties on the fresh stage and the stac-geoparquet file (bench/queries.py): warm times,
    best of five, each side in its own process; the selection of ``update --where`` by column and by JSON path."""
    out = discard(stage.parent / "queries.json")
    m = run([PY, "-m", "bench.queries", str(stage), *([str(sgp)] if sgp else []), "--out", str(out)])
    if m.returncode != 0:
        add("query avg(cloud) by collection", "stacbatch", m)
        return
    for r in json.loads(out.read_text()):
        add(r["step"], r["tool"], Measurement(r["best"], m.peak_mb, 0, ""))


def _secs(s: float) -> str:
    return f"{s:,.3f}" if s < 1 else f"{s:,.1f}"


def report(rows: list[Row]) -> str:
    lines = [
        f"{'step':<30} {'items':>9}  {'tool':<28} {'seconds':>8} {'items/s':>10} {'peak MB':>8}  {'stacbatch is':>14}"
    ]
    for row in rows:
        same = [r for r in rows if r.items == row.items and r.tool == "stacbatch"]
        if not any(r.step == row.step for r in same):  # a sample of the same items (stac-valid): rates compare
            same += [r for r in rows if r.tool == "stacbatch" and r.step == row.step]
        # the same step, else the same kind of step (e.g. a load from NDJSON next to a load from Parquet)
        ours = next((r for r in same if r.step == row.step), None) or next(
            (r for r in same if r.step.split(" (")[0] == row.step.split(" (")[0]), None
        )
        ratio = ""
        if row.tool == "stacbatch" and row.m.returncode != 0:
            ratio = "(FAILED)"
        elif ours and not ours.rate and row.tool != "stacbatch":
            ratio = "(stacbatch failed)"
        elif ours and row.tool != "stacbatch" and row.rate:
            r = ours.rate / row.rate
            ratio = f"{r:,.1f}x faster" if r >= 1 else f"{1 / r:,.1f}x slower"
        elif row.tool != "stacbatch":
            ratio = "(tool failed)"
        lines.append(
            f"{row.step:<30} {row.items:>9,}  {row.tool:<28} {_secs(row.m.seconds):>8} {row.rate:>10,.0f} "
            f"{row.m.peak_mb:>8,.0f}  {ratio:>14}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description="stacbatch benchmarks")
    ap.add_argument("--sizes", default=None, help="comma-separated item counts (default 100000,1000000)")
    ap.add_argument("--quick", action="store_true", help="10k and 100k items")
    ap.add_argument("--no-anchors", action="store_true", help="stacbatch only")
    ap.add_argument("--no-edits", action="store_true", help="skip update/delete/diff/merge")
    ap.add_argument("--no-validate", action="store_true", help="skip validation (and stac-valid)")
    ap.add_argument("--api-items", type=int, default=20_000, help="items served by the test STAC API (0: skip)")
    ap.add_argument("--tree-max", type=int, default=100_000, help="largest N for the JSON tree emit")
    ap.add_argument("--mapping-rows", type=int, default=1_000_000, help="CSV rows staged through a mapping (0: skip)")
    args = ap.parse_args()
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([10_000, 100_000] if args.quick else [100_000, 1_000_000])
    )
    OUT.mkdir(parents=True, exist_ok=True)
    write_collections(OUT / "collections")
    rows: list[Row] = []
    started = datetime.now(UTC)
    for n in sizes:
        print(f"\n{n:,} items", file=sys.stderr, flush=True)
        bench_size(n, rows, not args.no_anchors, args.tree_max, not args.no_edits, not args.no_validate)
    if args.api_items:
        from bench.api import bench_api, bench_pgstac, bench_pgstac_small

        print(f"\nSTAC API, {args.api_items:,} items, 200 ms a page", file=sys.stderr, flush=True)
        work = OUT / "work-api"
        work.mkdir(parents=True, exist_ok=True)

        def add(step: str, tool: str, m: Measurement) -> None:
            rows.append(Row(step, tool, args.api_items, m))
            if m.returncode != 0:
                print(
                    f"  {step} {tool} FAILED ({m.returncode}): {m.stderr.strip()[-500:]}", file=sys.stderr, flush=True
                )

        bench_api(args.api_items, work, [_tool("stacbatch"), "-q"], add)
        print(f"\nstac-fastapi-pgstac, {args.api_items:,} items", file=sys.stderr, flush=True)
        bench_pgstac(args.api_items, work, [_tool("stacbatch"), "-q"], add)
        print("\nstac-fastapi-pgstac, the real corpus", file=sys.stderr, flush=True)
        bench_pgstac_small(work, [_tool("stacbatch"), "-q"], lambda s, t, n, m: rows.append(Row(s, t, n, m)))
    if args.mapping_rows:
        from bench.mapping import bench_mapping

        print(f"\nCSV + mapping, {args.mapping_rows:,} rows", file=sys.stderr, flush=True)
        m = bench_mapping(args.mapping_rows, OUT / "work-mapping", [_tool("stacbatch"), "-q"])
        rows.append(Row("CSV + mapping -> stage", "stacbatch", args.mapping_rows, m))
    text = report(rows)
    head = (
        f"stacbatch bench, {started:%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores, Python {platform.python_version()}"
    )
    print(f"\n{head}\n{text}")
    (OUT / f"results-{started:%Y%m%dT%H%M%S}.json").write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
                "machine": head.split(" UTC, ", 1)[1],
                "rows": [
                    {
                        "step": r.step,
                        "tool": r.tool,
                        "items": r.items,
                        "seconds": round(r.m.seconds, 3),
                        "items_per_s": round(r.rate),
                        "peak_mb": round(r.m.peak_mb),
                        "ok": r.m.returncode == 0,
                    }
                    for r in rows
                ],
            },
            indent=2,
        )
    )
    empty_trash()


if __name__ == "__main__":
    main()
