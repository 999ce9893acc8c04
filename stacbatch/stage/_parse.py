"""Parse units into record batches. Runs in worker processes (or inline for small inputs): pure, picklable I/O.

``batch_size`` bounds the rows of each record batch a unit yields; units themselves are cut by bytes (NDJSON) or
by documents, so inter-process hand-off stays cheap whatever the batch size.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from stacbatch.engine import _json
from stacbatch.kernel import _canonical, _scan
from stacbatch.kernel._rows import BBOX, DEFAULT_COLLECTION, PARSED_SCHEMA, STAGE_SCHEMA, TS, BatchBuilder, ItemError
from stacbatch.sources import DictsUnit, LinesUnit, PagesUnit, RangeUnit, RecordsUnit, Unit


@dataclass
class ParseResult:
    batches: list[pa.RecordBatch] = field(default_factory=list)
    read: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    collections: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Documents that are neither items nor collections (catalogs in a folder tree): not items, not failures.
    skipped: int = 0
    #: For byte-range units: (source, lines in the range); failure line numbers are relative to the range.
    relative_lines: tuple[str, int] | None = None
    #: for mapped records: (source, that batch's per-field counts), folded into the source's by the loader
    mapping: tuple[str, Any] | None = None
    #: set by ``parse_routed`` (the batches are then empty): (collection, bucket, ``Spill`` or written files)
    parts: list[Any] = field(default_factory=list)
    #: the unit's ``PagesUnit.done``: collections complete once this result is taken
    done: tuple[str, ...] = ()


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

    def extend(self, batch: pa.RecordBatch, read: int) -> None:
        """Rows parsed elsewhere (the kernel), after what the builder holds, cut to ``batch_size`` rows."""
        self.flush()
        self.res.read += read
        for start in range(0, batch.num_rows, self.batch_size):
            self.res.batches.append(batch.slice(start, self.batch_size))

    def fail(self, rec: dict[str, Any]) -> None:
        self.res.read += 1
        self.res.failures.append(rec)

    def flush(self) -> None:
        if len(self.builder):
            self.res.batches.append(self.builder.finish())
            self.builder = BatchBuilder()


#: ``(stage rows, name prefix) -> parts``: the stage writer's placement (picklable): routes the rows to partitions,
#: spills them (``write_parts``) or writes them as stage files
Place = Callable[[pa.Table, str], list[Any]]


def parse_routed(job: tuple[int, Unit], batch_size: int, run_id: str, place: Place) -> ParseResult:
    """Parse unit number ``job[0]`` into stage rows and ``place`` them: grouped by partition, spilled to an Arrow
    IPC file or written as stage files; ``parts`` says where each partition's rows are.

    Runs in worker processes: parsing, routing and placing all happen there, so the loading process only
    collects file names (handing rows back to it cost two more copies of every item and kept it busy).
    ``stage_seq`` is the unit number in the high 32 bits and the row in the low ones: it orders rows as the
    input did whichever process parsed them ("last wins").
    """
    index, unit = job
    res = parse_unit(unit, batch_size)
    res.done = unit.done if isinstance(unit, PagesUnit) else ()
    place_rows(res, index, run_id, place)
    return res


def place_rows(res: ParseResult, index: int, run_id: str, place: Place) -> pa.Table | None:
    """Unit ``index``'s parsed rows as stage rows (its run; ``stage_seq`` in input order), handed to ``place``;
    returns the table placed (None when there were no rows)."""
    if not res.batches:
        return None
    # contiguous first: the router's gather is several times faster over one chunk than over a few
    table = pa.Table.from_batches(res.batches).combine_chunks()
    n = table.num_rows
    table = pa.Table.from_arrays(
        [*table.columns, pa.repeat(pa.scalar(run_id), n), pa.arange(index << 32, (index << 32) + n)],
        schema=STAGE_SCHEMA,
    )
    res.batches = []
    res.parts = place(table, f"u{index:07d}")
    return table


@dataclass(frozen=True)
class Spill:
    """One partition's rows in a spill file: record batches ``first`` to ``first + count - 1``."""

    path: str
    first: int
    count: int
    rows: int
    #: item text bytes, to group a large partition's spills into output files of bounded size
    nbytes: int


def write_parts(table: pa.Table, groups: list[Any], spill_dir: str, prefix: str) -> list[Any]:
    """Each group's rows (``Router.route``) as record batches of one Arrow IPC spill file; returns
    (collection, bucket, ``Spill``) per group.

    One file per unit, not per partition: a load over a hundred partitions would otherwise create a hundred
    files per unit, and creating files is slow on some file systems (ext4 without a journal scans recently
    freed inodes on each).
    """
    parts = []
    path = os.path.join(spill_dir, f"{prefix}.arrow")
    first = 0
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, STAGE_SCHEMA) as writer:
        for collection, bucket, start, n in groups:
            rows = table.slice(start, n)
            batches = rows.to_batches()
            for batch in batches:
                writer.write_batch(batch)
            nbytes = sum(c.nbytes for c in rows["item"].chunks)
            parts.append((collection, bucket, Spill(path, first, len(batches), n, nbytes)))
            first += len(batches)
    return parts


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
                newlines = _parse_lines(unit.source, data, 1, out)
                out.res.relative_lines = (unit.source, newlines + (0 if data.endswith(b"\n") else 1))
        elif isinstance(unit, DictsUnit):
            for label, obj in zip(unit.labels, unit.items, strict=True):
                bad = _json.non_finite_path(obj) if unit.check_finite else None
                if bad is None:
                    out.add(obj, label, None)
                else:
                    item_id = obj.get("id") if isinstance(obj, dict) else None
                    hint = "STAC is JSON: write null or a finite number"
                    out.fail(_failure(label, _json.NON_FINITE, item_id=item_id, field=bad, hint=hint))
        elif isinstance(unit, RecordsUnit):
            assert unit.run is not None, "a RecordsUnit comes with the function that maps it"
            mapped = unit.run(unit)
            out.res.mapping = (unit.source, mapped.stats)
            out.flush()
            if mapped.columns is not None and mapped.columns.num_rows:
                out.res.batches.append(mapped_batch(mapped.columns))
            out.res.read += mapped.stats.rows + len(unit.rejected)
            out.res.failures.extend(unit.rejected)
            out.res.failures.extend(mapped.failures)
        elif isinstance(unit, PagesUnit):
            for label, body, keep in unit.pages:
                block = _scan.page_features(body) if isinstance(body, bytes) else None
                if block is not None:
                    _parse_features(label, block, keep, out)
                    continue
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


def _parse_features(label: str, block: bytes, keep: tuple[int, ...] | None, out: _Collector) -> None:
    """A page's features from the kernel (minified, one per line) through the NDJSON path; failures name the
    feature as the decoded path did (``page#features[i]``)."""
    if keep is not None:
        lines = block.split(b"\n")
        block = b"".join(lines[i] + b"\n" for i in keep)
    first = len(out.res.failures)
    _parse_lines(f"{label}#features", block, 1, out)
    for rec in out.res.failures[first:]:
        n = rec.pop("line", None)
        if n is not None:
            rec["source"] = f"{label}#features[{n - 1 if keep is None else keep[n - 1]}]"


def mapped_batch(cols: pa.RecordBatch) -> pa.RecordBatch:
    """A stage batch from a mapping's output (``MappedBatch.columns``): the query columns, bounds and most WKB are
    there already (DuckDB and the geometry kernel computed them); the WKB of geometries the SELECT built as GeoJSON
    (from lon/lat or bbox columns) is made by shapely; the content hash comes from the kernel that assembled the
    items, or is taken of each item's text (without parsing it into Python objects)."""
    names = cols.schema.names
    hashes = cols.column("__hash") if "__hash" in names else _scan.text_hashes(cols.column("item"))
    if hashes is None:  # no kernel
        hashes = pa.array([_canonical.content_hash_text(t) for t in cols.column("item").to_pylist()], pa.string())
    wkb = cols.column("__geometry_wkb")
    if wkb.null_count:
        import shapely

        # only the missing values become Python objects (not every row's WKB, as a numpy object array did)
        missing = wkb.is_null()
        texts = cols.column("__geometry").filter(missing).to_numpy(zero_copy_only=False)
        made = shapely.to_wkb(shapely.from_geojson(texts, on_invalid="ignore"), flavor="iso")
        wkb = pc.replace_with_mask(wkb, missing, pa.array(made, wkb.type))
    xmin = cols.column("__xmin")
    bbox = pa.StructArray.from_arrays(
        [xmin, *(cols.column(f"__{side}") for side in ("ymin", "xmax", "ymax"))],
        fields=list(BBOX),
        mask=xmin.is_null(),
    )
    colls = pc.fill_null(cols.column("__collection"), DEFAULT_COLLECTION)
    arrays = [
        colls,
        cols.column("__id"),
        *(cols.column(f"__{k}").cast(pa.int64()).view(TS) for k in ("datetime", "start_datetime", "end_datetime")),
        bbox,
        wkb.cast(pa.binary()),
        pa.ExtensionArray.from_storage(pa.json_(pa.string()), cols.column("item").cast(pa.string())),
        hashes,
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=PARSED_SCHEMA)


_SCAN_BYTES = 4 * 1024 * 1024


def _parse_lines(source: str, data: bytes, first_line: int, out: _Collector) -> int:
    """Parse an NDJSON block; return how many newline characters it holds."""
    if not _scan.AVAILABLE:
        for n, raw in enumerate(data.split(b"\n"), first_line):
            _parse_line(source, raw, n, out)
        return data.count(b"\n")
    # bound the kernel's buffers: whole lines, a few MB at a time (views of the block, not copies)
    view = memoryview(data)
    start = 0
    newlines = 0
    while start < len(data):
        end = data.find(b"\n", start + _SCAN_BYTES)
        end = len(data) if end < 0 else end + 1
        n = _scan_lines(source, view[start:end], first_line, out)
        first_line += n
        newlines += n
        start = end
    return newlines


def _scan_lines(source: str, data: memoryview, first_line: int, out: _Collector) -> int:
    scanned = _scan.scan_block(data)
    if not scanned.rest:
        if scanned.batch is not None:
            out.extend(scanned.batch, scanned.batch.num_rows)
        return scanned.newlines
    # Lines the kernel left to Python: parsed into a builder of their own, then merged with the kernel's rows in
    # line order, so that the last of duplicate items still wins.
    out.flush()
    size, out.batch_size = out.batch_size, 1 << 62
    py_lines: list[int] = []
    for idx, start, end in scanned.rest:
        before = len(out.builder)
        _parse_line(source, bytes(data[start:end]), first_line + idx, out)
        if len(out.builder) > before:
            py_lines.append(idx)
    out.batch_size = size
    parts = [b for b in (scanned.batch, out.builder.finish() if py_lines else None) if b is not None]
    out.builder = BatchBuilder()
    if not parts:
        return scanned.newlines
    order = np.argsort(np.concatenate([scanned.lines, np.array(py_lines, np.int64)]), kind="stable")
    merged = pa.Table.from_batches(parts).take(order).combine_chunks().to_batches()[0]
    out.extend(merged, 0 if scanned.batch is None else scanned.batch.num_rows)
    return scanned.newlines


def _parse_line(source: str, raw: bytes, n: int, out: _Collector) -> None:
    if not raw or raw.isspace():
        return
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
            return
    out.add(obj, source, n, raw if exact else None)


def _read(path: str) -> bytes:
    if "://" not in path and not path.endswith(".gz"):
        with open(path, "rb") as f:  # local: resolving an fsspec filesystem per file costs more than the read
            return f.read()
    from stacbatch.engine import _fs

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
