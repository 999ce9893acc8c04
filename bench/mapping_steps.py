"""CPU seconds per step of a mapping's worker path, in one process (no pool, no partition writing), to see where a
mapping's time goes; `bench.mapping` times the whole load.

    python -m bench.mapping_steps [CSV] [MAPPING]     (default: the bench's 1M-row inventory and mapping)
"""

from __future__ import annotations

import argparse
import pickle
import tempfile
import time
from pathlib import Path

import fsspec
import pyarrow as pa

from bench.run import OUT


def main() -> None:
    from stacbatch.engine._pool import without_pandas
    from stacbatch.kernel._rows import STAGE_SCHEMA
    from stacbatch.mapping._doc import read_mapping
    from stacbatch.mapping._run import Mapper
    from stacbatch.mapping._source import MappedSource
    from stacbatch.stage._manifest import DEFAULT_SETTINGS
    from stacbatch.stage._parse import mapped_batch
    from stacbatch.stage._route import Placement, Router

    work = OUT / "work-mapping"
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("csv", nargs="?", default=str(work / "inventory-1000000.csv"))
    ap.add_argument("mapping", nargs="?", default=str(work / "inventory.yaml"))
    args = ap.parse_args()
    without_pandas()  # as the CLI and its workers: pyarrow would import pandas on its first conversion
    if not Path(args.csv).exists():
        raise SystemExit(f"{args.csv}: no such file (python -m bench.mapping writes it)")
    steps: dict[str, float] = {}
    clock = time.process_time()

    def tick(name: str) -> None:
        nonlocal clock
        now = time.process_time()
        steps[name] = steps.get(name, 0.0) + now - clock
        clock = now

    doc = read_mapping(args.mapping)
    source = MappedSource(args.csv, doc)
    tick("bind source, check")
    units = list(source.units())
    tick("read source")
    # as the pool does: pickled (the records as a memory-mapped Arrow file, stacbatch/engine/_handoff.py) and back
    units = [pickle.loads(pickle.dumps(u)) for u in units]
    tick("hand to a worker")
    mapper = Mapper(doc, source.columns)
    tick("worker set-up")
    out = tempfile.TemporaryDirectory(prefix="stacbatch-steps-")  # ~300 MB of stage files at 1M rows: removed
    # as a load's workers place rows: large partitions written as stage files, the rest spilled
    fs = fsspec.filesystem("file")
    place = Placement(Router({}, "year"), fs, out.name, "steps", dict(DEFAULT_SETTINGS), out.name, True)
    for k, unit in enumerate(units):
        mapped = mapper.run(unit.source, unit.records, unit.first_row)
        tick("map (geometry, SELECT, assembly)")
        if mapped.columns is None:
            continue
        batch = mapped_batch(mapped.columns)
        n = batch.num_rows
        table = pa.Table.from_arrays(
            [*batch.columns, pa.repeat(pa.scalar("run"), n), pa.arange(k << 32, (k << 32) + n)], schema=STAGE_SCHEMA
        )
        tick("stage columns")
        place(table, f"u{k:07d}")
        tick("route, sort and write stage files")
    out.cleanup()
    rows = sum(u.records.num_rows for u in units)
    print(f"{rows:,} rows, CPU seconds (per 100k rows):")
    for name, sec in steps.items():
        print(f"  {name:34s} {sec:7.2f}  ({sec / rows * 1e5:.3f})")
    total = sum(steps.values())
    print(f"  {'total':34s} {total:7.2f}  ({total / rows * 1e5:.3f})")


if __name__ == "__main__":
    main()
