"""Parse units into record batches. Runs in worker processes (or inline for small inputs): pure, picklable I/O.

``batch_size`` bounds the rows of each record batch a unit yields; units themselves are cut by bytes (NDJSON) or
by documents, so inter-process hand-off stays cheap whatever the batch size.
"""

from __future__ import annotations

import contextlib
import gc
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from stacbatch import _json
from stacbatch._rows import BBOX, DEFAULT_COLLECTION, PARSED_SCHEMA, TS, BatchBuilder, ItemError
from stacbatch.sources import DictsUnit, LinesUnit, PagesUnit, RangeUnit, RecordsUnit, Unit


@dataclass
class ParseResult:
    batches: list[pa.RecordBatch] = field(default_factory=list)
    #: Set by worker processes: the batches are in this Arrow IPC file instead (see ``take_batches``).
    spill: str | None = None
    read: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    collections: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Documents that are neither items nor collections (catalogs in a folder tree): not items, not failures.
    skipped: int = 0
    #: For byte-range units: (source, lines in the range); failure line numbers are relative to the range.
    relative_lines: tuple[str, int] | None = None
    #: for mapped records: (source, that batch's per-field counts), folded into the source's by the loader
    mapping: tuple[str, Any] | None = None


def _failure(
    source: str,
    reason: str,
    *,
    line: int | None = None,
    item_id: Any = None,
    field: str | None = None,
    hint: str = "",
    row: int | None = None,
) -> dict[str, Any]:
    rec: dict[str, Any] = {"source": source}
    if line is not None:
        rec["line"] = line
    if row is not None:
        rec["row"] = row
    if isinstance(item_id, str):
        rec["id"] = item_id
    if field:
        rec["field"] = field
    rec["reason"] = reason
    if hint:
        rec["hint"] = hint
    return rec


class _Collector:
    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.builder = BatchBuilder()
        self.res = ParseResult()

    def add(self, obj: Any, source: str, line: int | None, raw: bytes | None = None, row: int | None = None) -> None:
        self.res.read += 1
        try:
            self.builder.add(obj, raw)
        except ItemError as err:
            item_id = obj.get("id") if isinstance(obj, dict) else None
            self.res.failures.append(
                _failure(source, str(err), line=line, item_id=item_id, field=err.field, hint=err.hint, row=row)
            )
            return
        except RecursionError:
            self.res.failures.append(_failure(source, "item is nested too deeply", line=line, row=row))
            return
        if len(self.builder) >= self.batch_size:
            self.flush()

    def fail(self, rec: dict[str, Any]) -> None:
        self.res.read += 1
        self.res.failures.append(rec)

    def flush(self) -> None:
        if len(self.builder):
            self.res.batches.append(self.builder.finish())
            self.builder = BatchBuilder()


def parse_unit_to_spill(unit: Unit, batch_size: int, spill_dir: str) -> ParseResult:
    """``parse_unit`` for worker processes: batches go to a memory-backed Arrow IPC file, not through the pipe.

    Pickling ~5 MB of Arrow buffers through a pipe cost ~15% of load time; a file in ``/dev/shm`` costs one copy
    and the parent maps it without another.
    """
    res = parse_unit(unit, batch_size)
    if res.batches:
        path = os.path.join(spill_dir, f"{os.getpid()}-{uuid.uuid4().hex}.arrow")
        try:
            with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, res.batches[0].schema) as writer:
                for batch in res.batches:
                    writer.write_batch(batch)
        except OSError:  # e.g. a small /dev/shm in a container: hand the batches over through the pipe
            with contextlib.suppress(OSError):
                os.unlink(path)
            return res
        res.batches = []
        res.spill = path
    return res


def take_batches(res: ParseResult) -> list[pa.RecordBatch]:
    """The result's batches, reading (memory-mapping) and unlinking its spill file if it has one."""
    if res.spill is None:
        return res.batches
    source = pa.memory_map(res.spill)
    reader = pa.ipc.open_file(source)
    batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
    os.unlink(res.spill)  # the mapping keeps the pages alive until the batches are released
    return batches


def parse_unit(unit: Unit, batch_size: int) -> ParseResult:
    # The parser makes no reference cycles; pausing the cyclic GC saves the repeated scans that millions of
    # fresh dicts would trigger (measured: ~20% of parse time).
    enabled = gc.isenabled()
    gc.disable()
    try:
        out = _Collector(batch_size)
        if isinstance(unit, LinesUnit):
            _parse_lines(unit.source, unit.data, unit.first_line, out)
        elif isinstance(unit, RangeUnit):
            try:
                with open(unit.path, "rb") as f:
                    f.seek(unit.offset)
                    data = f.read(unit.length)
            except OSError as err:
                out.fail(_failure(unit.source, f"cannot read: {err}"))
            else:
                _parse_lines(unit.source, data, 1, out)
                out.res.relative_lines = (unit.source, data.count(b"\n") + (0 if data.endswith(b"\n") else 1))
        elif isinstance(unit, DictsUnit):
            for label, obj in zip(unit.labels, unit.items, strict=True):
                out.add(obj, label, None)
        elif isinstance(unit, RecordsUnit):
            from stacbatch.mapping._run import map_records

            mapped = map_records(unit)
            out.res.mapping = (unit.source, mapped.stats)
            out.flush()
            if mapped.columns is not None and mapped.columns.num_rows:
                out.res.batches.append(mapped_batch(mapped.columns))
            out.res.read += mapped.stats.rows
            out.res.failures.extend(mapped.failures)
        elif isinstance(unit, PagesUnit):
            for label, body, keep in unit.pages:
                # bytes were decoded once already by the fetcher: they are valid
                features = _json.loads(body)["features"] if isinstance(body, bytes) else body
                for i in range(len(features)) if keep is None else keep:
                    out.add(features[i], f"{label}#features[{i}]", None)
        else:
            for path in unit.paths:
                _parse_file(path, out)
        out.flush()
        return out.res
    finally:
        if enabled:
            gc.enable()


def mapped_batch(cols: pa.RecordBatch) -> pa.RecordBatch:
    """A stage batch from a mapping's output: the query columns are already there (DuckDB computed them), the
    geometry becomes WKB and bounds in shapely's vectorised functions, and only the content hash needs each item
    parsed (its canonical form must be the one every other path hashes)."""
    import shapely

    texts = cols.column("item").to_pylist()
    hashes = [_json.content_hash(orjson.loads(t)) for t in texts]
    geoms = shapely.from_geojson(cols.column("__geometry").to_numpy(zero_copy_only=False), on_invalid="ignore")
    bounds = shapely.bounds(geoms)
    xmin = pa.array(bounds[:, 0], pa.float64(), mask=np.isnan(bounds[:, 0]))
    bbox = pa.StructArray.from_arrays(
        [xmin, *(pa.array(bounds[:, i], pa.float64()) for i in (1, 2, 3))], fields=list(BBOX), mask=xmin.is_null()
    )
    colls = pc.fill_null(cols.column("__collection"), DEFAULT_COLLECTION)
    arrays = [
        colls,
        cols.column("__id"),
        *(cols.column(f"__{k}").cast(pa.int64()).view(TS) for k in ("datetime", "start_datetime", "end_datetime")),
        bbox,
        pa.array(shapely.to_wkb(geoms, flavor="iso"), pa.binary()),
        pa.ExtensionArray.from_storage(pa.json_(pa.string()), cols.column("item").cast(pa.string())),
        pa.array(hashes, pa.string()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=PARSED_SCHEMA)


def _parse_lines(source: str, data: bytes, first_line: int, out: _Collector) -> None:
    for n, raw in enumerate(data.split(b"\n"), first_line):
        if not raw or raw.isspace():
            continue
        try:
            obj = orjson.loads(raw)
            exact = True
        except orjson.JSONDecodeError:
            # The stdlib may still read it (integers beyond 64 bits, NaN): then a re-serialisation is stored.
            exact = False
            try:
                obj = _json.loads(raw)
            except ValueError as err:
                out.fail(_failure(source, f"not valid JSON ({err})", line=n, hint="fix or remove the line"))
                continue
        out.add(obj, source, n, raw if exact else None)


def _read(path: str) -> bytes:
    if "://" not in path and not path.endswith(".gz"):
        with open(path, "rb") as f:  # local: resolving an fsspec filesystem per file costs more than the read
            return f.read()
    from stacbatch import _fs

    fs, p = _fs.filesystem(path)
    with fs.open(p, "rb", compression="gzip" if p.endswith(".gz") else None) as f:
        data: bytes = f.read()
    return data


def _parse_file(path: str, out: _Collector) -> None:
    try:
        data = _read(path)
    except (OSError, EOFError) as err:
        out.fail(_failure(path, f"cannot read: {err}", hint="check the file exists and is readable"))
        return
    try:
        doc = _json.loads(data)
    except ValueError as err:
        out.fail(_failure(path, f"not valid JSON ({err})", hint="fix the file"))
        return
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "Collection":
        out.res.collections.append((path, doc))
    elif kind == "Catalog":
        out.res.skipped += 1
    elif kind == "FeatureCollection" and isinstance(doc.get("features"), list):
        for i, obj in enumerate(doc["features"]):
            out.add(obj, f"{path}#features[{i}]", None)
    elif isinstance(doc, list):
        for i, obj in enumerate(doc):
            out.add(obj, f"{path}#[{i}]", None)
    else:
        out.add(doc, path, None)
