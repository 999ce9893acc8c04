"""Queries over properties (issue 19): the stage's typed columns next to a stac-geoparquet file, both through
DuckDB on this machine, and the row selection of ``update --where`` by a property, by column and by JSON path
(what every selection did before columns).

    python -m bench.queries STAGE [SGP_FILE] [--out FILE]   # JSON: per query and tool, first and best-of-5 s

Each side opens its own connection (``open_stage`` for the stage, a plain DuckDB connection for the file); the
first run includes reading the footers, the best of the next five is the warm figure.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: the same SQL on both sides: the stage's items view and the file name the property alike
QUERIES = {
    "avg(cloud) by collection": 'SELECT collection, avg("eo:cloud_cover") FROM {t} GROUP BY collection',
    "count cloud<10, dt>=2021": (
        "SELECT count(*) FROM {t} WHERE \"eo:cloud_cover\" < 10 AND datetime >= TIMESTAMPTZ '2021-01-01'"
    ),
}
#: a filter on an asset field: the stage's asset_fields map, the file's struct of per-key structs, and the stage's
#: item text (what it took before asset_fields)
ASSET_QUERY = "SELECT count(*) FROM {t} WHERE {b04_type} LIKE 'image/tiff%'"
ASSET_FIELD = {
    "stacbatch": "asset_fields.type['B04']",
    "stacbatch, JSON path (before)": "item->>'$.assets.B04.type'",
    "stac-geoparquet file": "assets.B04.type",
}
#: about 1% of the generated items (cloud cover is uniform over 0..100)
SELECT_WHERE = '"eo:cloud_cover" < 1'
SELECT_WHERE_TEXT = "(item->>'$.properties.\"eo:cloud_cover\"')::DOUBLE < 1"


def _time(fn: Callable[[], Any]) -> tuple[float, float]:
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return first, best


def main() -> None:
    import argparse

    import duckdb

    from stacbatch.stage import select_rows
    from stacbatch.stage._stage import open_stage

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage")
    ap.add_argument("sgp", nargs="?")
    ap.add_argument("--out", help="write the JSON here (default: stdout)")
    args = ap.parse_args()
    stage_path, sgp = args.stage, args.sgp
    out: list[dict[str, Any]] = []
    with open_stage(stage_path) as stage:
        for name, query in QUERIES.items():
            first, best = _time(lambda q=query: stage.sql(q.format(t="items")).fetchall())
            out.append({"step": f"query {name}", "tool": "stacbatch", "first": first, "best": best})
        for tool in ("stacbatch", "stacbatch, JSON path (before)"):
            q = ASSET_QUERY.format(t="items", b04_type=ASSET_FIELD[tool])
            first, best = _time(lambda q=q: stage.sql(q).fetchall())
            out.append({"step": "query count B04 COG (asset)", "tool": tool, "first": first, "best": best})
        for tool, where in (("stacbatch", SELECT_WHERE), ("stacbatch, JSON path (before)", SELECT_WHERE_TEXT)):
            rows: dict[str, list[int]] = {}

            def pick(w: str = where, got: dict[str, list[int]] = rows) -> None:
                got.update(select_rows(stage, w))

            first, best = _time(pick)
            picked = sum(len(v) for v in rows.values())
            out.append(
                {"step": "update --where 1%: select", "tool": tool, "first": first, "best": best, "rows": picked}
            )
    if sgp:
        con = duckdb.connect()
        con.execute(f"CREATE VIEW sgp AS SELECT * FROM read_parquet('{sgp}')")
        for name, query in QUERIES.items():
            first, best = _time(lambda q=query: con.sql(q.format(t="sgp")).fetchall())
            out.append({"step": f"query {name}", "tool": "stac-geoparquet file", "first": first, "best": best})
        q = ASSET_QUERY.format(t="sgp", b04_type=ASSET_FIELD["stac-geoparquet file"])
        first, best = _time(lambda q=q: con.sql(q).fetchall())
        out.append(
            {"step": "query count B04 COG (asset)", "tool": "stac-geoparquet file", "first": first, "best": best}
        )
    text = json.dumps(out)
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
