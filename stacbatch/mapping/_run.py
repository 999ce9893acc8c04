"""Running a mapping over a tabular source: DuckDB reads the source in record batches (``MappedSource``, in the
loading process); in whichever process takes a batch (``map_records``), geometries given as WKT, WKB or GeoJSON are
converted by shapely's vectorised functions (DuckDB's spatial extension is not available offline) and the compiled
SELECT turns the batch into item texts with their query columns.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stacbatch._sql import ident, literal, one_line
from stacbatch.errors import InputError
from stacbatch.mapping import _assemble
from stacbatch.mapping._compile import Compiled, compile_mapping, geom_columns
from stacbatch.mapping._doc import Doc, MappingError
from stacbatch.mapping._geom import geometry_columns
from stacbatch.sources._units import RecordsUnit

#: source records per batch: DuckDB's vectorised work wants thousands, and each batch costs ~25 ms of planning
#: (its reader hands out at most ~32k rows a batch; gathering two per unit measured no faster); memory stays
#: bounded by it
BATCH_ROWS = 32_768
FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".json": "json", ".geojson": "json"}
FORMATS |= {".ndjson": "ndjson", ".jsonl": "ndjson", ".parquet": "parquet", ".geoparquet": "parquet"}


def _format(path: str, options: dict[str, Any]) -> str:
    if options.get("format"):
        return str(options["format"])
    name = path.lower().removesuffix(".gz")
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise InputError(f"{path}: cannot tell the format from the name; set source.format in the mapping")


def source_sql(path: str, options: dict[str, Any], rejects: bool = False) -> str:
    """The SELECT that reads a source file's records, with the mapping's source options. ``rejects``: CSV rows
    DuckDB cannot read (wrong number of fields, bad quoting) go to its ``reject_errors`` table instead of ending
    the read (``MappedSource.units`` turns them into failures)."""
    fmt = _format(path, options)
    if fmt == "csv":
        # no date/time guessing: 05/07/2021 is ambiguous, and a mapping's datetime spec parses text itself
        candidates = "auto_type_candidates = ['BOOLEAN', 'BIGINT', 'DOUBLE', 'VARCHAR']"
        args = [literal(path), f"header = {'true' if options.get('header', True) else 'false'}", candidates]
        if rejects:
            args.append("store_rejects = true")
        for opt, name in (("delimiter", "delim"), ("quote", "quote"), ("escape", "escape"), ("encoding", "encoding")):
            if opt in options:
                args.append(f"{name} = {literal(str(options[opt]))}")
        return f"SELECT * FROM read_csv({', '.join(args)})"
    if fmt == "parquet":
        return f"SELECT * FROM read_parquet({literal(path)})"
    json_format = "newline_delimited" if fmt == "ndjson" else "auto"
    scan = f"read_json({literal(path)}, format = {literal(json_format)})"
    records = options.get("records")
    if not records:
        return f"SELECT * FROM {scan}"
    # a record array inside the document, e.g. {"data": [...]}: one row per element, its fields as columns
    path_sql = ".".join(ident(p) for p in str(records).split("."))
    return f"SELECT unnest(__r, recursive := false) FROM (SELECT unnest({path_sql}) AS __r FROM {scan})"


def _connect(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_geoparquet_conversion = false")  # WKB stays a BLOB; shapely reads it
    con.execute("SET enable_progress_bar = false")
    return con


@dataclass
class FieldStats:
    set: int = 0
    defaulted: int = 0
    failed: int = 0
    sample: Any = None


@dataclass
class MappingRun:
    """Per source: rows read, rows that became items, rows that failed; per output field: set/defaulted/failed."""

    rows: int = 0
    items: int = 0
    failed: int = 0
    fields: dict[str, FieldStats] = field(default_factory=dict)

    def add(self, other: MappingRun) -> None:
        """Fold another batch's counts (from whichever process mapped it) into these."""
        self.rows += other.rows
        self.items += other.items
        self.failed += other.failed
        for name, f in other.fields.items():
            mine = self.fields.setdefault(name, FieldStats())
            mine.set += f.set
            mine.defaulted += f.defaulted
            mine.failed += f.failed
            if mine.sample is None:
                mine.sample = f.sample


@dataclass
class MappedBatch:
    """One batch of records, mapped: the items with their query columns (item, __id, __collection, __datetime,
    __start_datetime, __end_datetime, __geometry, __geometry_wkb, bounds __xmin...; __hash from the kernel), the
    records that could not become items, and the counts."""

    columns: pa.RecordBatch | None
    failures: list[dict[str, Any]]
    stats: MappingRun


class Mapper:
    """The compiled mapping, its lookups and a DuckDB connection: turns batches of records into stage-ready
    columns. One per process (worker processes build theirs once, see ``map_records``)."""

    def __init__(self, doc: Doc, columns: dict[str, str], *, assemble: bool | None = None) -> None:
        """``assemble``: item texts by the kernel (``_assemble``; the default when it is built) or by the SQL."""
        self.doc = doc
        self.columns = columns
        self.con = _connect(duckdb.connect())
        self.compiled: Compiled = compile_mapping(doc, columns)
        self._load_lookups()
        self.use_kernel = _assemble.available() if assemble is None else assemble
        self.assembler: _assemble.Assembler | None = None

    def _load_lookups(self) -> None:
        for name, (path, key, delim) in self.compiled.lookups.items():
            base = os.path.dirname(self.doc.path)
            full = path if os.path.isabs(path) or "://" in path else os.path.join(base, path)
            opts = {"delimiter": delim} if delim else {}
            try:
                self.con.execute(
                    f"CREATE OR REPLACE TEMP TABLE {ident('__lookup_' + name)} AS "
                    f"SELECT DISTINCT ON ({ident(key)}) * FROM ({source_sql(full, opts)})"
                )
            except duckdb.Error as err:
                raise self.doc.error(("lookups", name), f"cannot read {full}: {one_line(err)}") from None

    def check(self, empty: pa.Table) -> None:
        """Bind the compiled SQL on an empty batch; when it fails, each field's SQL on its own, so that an unknown
        function or column names its key (one query in the common case, not one per field)."""
        self.con.register("__batch", self._prepare(empty, 0))
        try:
            try:
                self.con.sql(self.compiled.run_sql()).fetchall()
            except duckdb.Error as err:
                for fld in self.compiled.fields:
                    try:
                        self.con.sql(f"SELECT {fld.value} FROM __batch").fetchall()
                    except duckdb.Error as field_err:
                        key = tuple(int(p) if p.isdigit() else p for p in fld.name.split("."))
                        raise self.doc.error(key, one_line(field_err)) from None
                raise MappingError(f"{self.doc.path}: the compiled mapping does not run: {one_line(err)}") from None
        finally:
            self.con.unregister("__batch")

    def _prepare(self, table: pa.Table, first_row: int) -> pa.Table:
        table = table.append_column("__row", pa.array(np.arange(first_row, first_row + table.num_rows), pa.int64()))
        if not self.compiled.geometry:
            return table
        for n, kind, col in self.compiled.geometry:
            text, wkb, bounds, canon = geometry_columns(table.column(col.split(".")[0]), kind)
            names = geom_columns(n)
            table = table.append_column(names[0], text).append_column(names[5], wkb).append_column(names[6], canon)
            for name, values in zip(names[1:5], bounds, strict=True):
                table = table.append_column(name, values)
        return table

    def run(self, source: str, records: pa.Table, first_row: int) -> MappedBatch:
        """Items (with their query columns), failures and per-field counts of one batch of records."""
        table = self._prepare(records, first_row)
        self.con.register("__batch", table)
        try:
            if self.use_kernel and self.assembler is None:
                self.assembler = _assemble.Assembler(self.con, self.compiled)
            sql = self.assembler.sql if self.assembler else self.compiled.run_sql()
            out = self.con.sql(sql).to_arrow_table()
            stats = self._count(out)
        finally:
            self.con.unregister("__batch")
        errors = out.column("__error")
        good, failures = out, []
        if errors.null_count < len(errors):
            ok = pc.is_null(errors)
            bad = out.filter(pc.invert(ok))
            failures = [
                {"source": source, "row": r, "reason": e, "hint": "fix the record or the mapping"}
                for r, e in zip(bad.column("__row").to_pylist(), bad.column("__error").to_pylist(), strict=True)
            ]
            good = out.filter(ok)
        geometry = self._geometry(table, good)
        for name, values in zip(("__geometry", "__geometry_wkb", "__geometry_canon"), geometry, strict=True):
            good = good.append_column(name, values)
        names = ["__id", "__collection", "__datetime", "__start_datetime", "__end_datetime", "__geometry"]
        names += ["__geometry_wkb", "__xmin", "__ymin", "__xmax", "__ymax"]
        if self.assembler:
            items, hashes = self.assembler.assemble(good)
            good = good.select(names).append_column("item", items).append_column("__hash", hashes)
        else:
            good = good.select([*names, "item"])
        good = good.combine_chunks().to_batches()
        stats.rows, stats.items, stats.failed = table.num_rows, table.num_rows - len(failures), len(failures)
        return MappedBatch(good[0] if good else None, failures, stats)

    def _geometry(self, table: pa.Table, good: pa.Table) -> tuple[pa.ChunkedArray, pa.ChunkedArray, pa.ChunkedArray]:
        """Per row of ``good``: the GeoJSON text, ISO WKB (null where the SELECT built the geometry: staging makes
        it) and canonical stream (null where not known) of the alternative that holds (``__alt``). Prepared columns
        are taken from the batch by record number, not passed through the SELECT (~430 bytes a row, copied twice)."""
        n = good.num_rows
        text: Any = good.column("__built").cast(pa.large_string())
        wkb: Any = pa.nulls(n, pa.large_binary())
        canon: Any = pa.nulls(n, pa.large_binary())
        if not self.compiled.geometry:
            return text, wkb, canon
        rows = good.column("__row").to_numpy() - (table.column("__row")[0].as_py() if table.num_rows else 0)
        identity = len(rows) == table.num_rows and bool((rows == np.arange(len(rows))).all())
        alt = good.column("__alt").to_numpy(zero_copy_only=False)
        for number, _kind, _col in self.compiled.geometry:
            mask = alt == number
            if not mask.any():
                continue
            names = geom_columns(number)
            parts = [table.column(names[k]) for k in (0, 5, 6)]
            if not identity:
                parts = [p.take(pa.array(rows)) for p in parts]
            parts = [parts[0].cast(pa.large_string()), parts[1].cast(pa.large_binary()), parts[2]]
            if mask.all():
                text, wkb, canon = parts
            else:
                where = pa.array(mask)
                text, wkb, canon = (pc.if_else(where, p, q) for p, q in zip(parts, (text, wkb, canon), strict=True))
        return text, wkb, canon

    def _count(self, out: pa.Table) -> MappingRun:
        """Per output field: set, defaulted, failed (from the run's ``count_columns``), and a value that failed
        (a second query over the batch registered as ``__batch``, only when one did)."""
        stats = MappingRun()
        fields = self.compiled.fields
        names = set(out.column_names)
        set_from = self.assembler.set_from if self.assembler else {}
        for i, f in enumerate(fields):
            got = [_trues(out, f"__{what}{i}", names) for what in ("set", "defaulted", "failed")]
            if i in set_from:
                got[0] = len(out) - out.column(set_from[i]).null_count
            stats.fields[f.name] = FieldStats(*got)
        failing = [(i, f) for i, f in enumerate(fields) if stats.fields[f.name].failed and f.failed]
        if failing:
            aggs = [f"CAST(any_value({f.source}) FILTER (WHERE {f.failed}) AS VARCHAR)" for _i, f in failing]
            samples = self.con.sql(f"SELECT {', '.join(aggs)} FROM {self.compiled.counts_from}").fetchall()[0]
            for (_i, f), sample in zip(failing, samples, strict=True):
                stats.fields[f.name].sample = sample
        return stats


def _trues(table: pa.Table, name: str, names: set[str]) -> int:
    if name not in names:
        return 0
    return int(pc.sum(table.column(name)).as_py() or 0)


class MappedSource:
    """A tabular source read through a mapping: checked and compiled up front (errors before any work); its
    ``units()`` are batches of records that ``map_records`` turns into items, in worker processes or inline."""

    def __init__(self, path: str, doc: Doc, batch_rows: int = BATCH_ROWS, sample: bool = False) -> None:
        """``sample``: for an HTTP source, fetch the first page only (enough to compile and explain)."""
        self.path = path
        self.doc = doc
        self.batch_rows = batch_rows
        self.stats = MappingRun()
        con = _connect(duckdb.connect())
        options = dict(doc.data.get("source") or {})
        read_path = path
        if path.startswith(("http://", "https://")):  # an HTTP JSON API: its records spill to a temporary NDJSON
            from stacbatch.mapping._http import fetch_records

            tmp = tempfile.mkdtemp(prefix="stacbatch-records-")
            weakref.finalize(self, shutil.rmtree, tmp, True)
            read_path = os.path.join(tmp, "records.ndjson")
            fetch_records(path, options, doc.http, read_path, max_pages=1 if sample else 2**62)
            options = {"format": "ndjson"}
        elif not os.path.exists(path) and "://" not in path:
            raise InputError(f"{path}: no such file")
        self.select = source_sql(read_path, options, rejects=True)
        try:
            # Each run of a relation binds it again, and binding a CSV sniffs it (~0.15 s at 20k sample lines):
            # the reader opened here gives the Arrow schema of an empty batch and, later, the batches.
            self._rel = con.sql(self.select)
            self.columns = {str(c): str(t) for c, t in zip(self._rel.columns, self._rel.types, strict=True)}
            self._reader: pa.RecordBatchReader | None = self._rel.to_arrow_reader(self.batch_rows)
            empty = self._reader.schema.empty_table()
        except duckdb.Error as err:
            fmt = _format(read_path, options)
            raise InputError(f"{path}: cannot read as {fmt}: {one_line(err)}") from None
        self.mapper = Mapper(doc, self.columns)
        self.mapper.check(empty)
        self.compiled = self.mapper.compiled
        self._con = con

    def units(self) -> Iterator[RecordsUnit]:
        """Batches of records; the last one also carries the CSV rows DuckDB rejected (known once all is read)."""
        reader, self._reader = self._reader or self._rel.to_arrow_reader(self.batch_rows), None
        row = 1
        held: RecordsUnit | None = None  # one unit behind, so that the last can take the rejected rows
        for batch in reader:
            if batch.num_rows == 0:
                continue
            if held is not None:
                yield held
            held = RecordsUnit(self.path, row, pa.Table.from_batches([batch]), self.doc, self.columns)
            row += batch.num_rows
        rejected = self._rejected()
        if held is None and rejected:
            held = RecordsUnit(self.path, row, reader.schema.empty_table(), self.doc, self.columns)
        if held is not None:
            yield dataclasses.replace(held, rejected=rejected)

    def _rejected(self) -> tuple[dict[str, Any], ...]:
        """One failure per CSV line DuckDB could not read (its ``reject_errors`` table; none for other formats)."""
        try:
            rows = self._con.sql(
                "SELECT line, min(error_message) FROM reject_errors GROUP BY line ORDER BY line"
            ).fetchall()
        except duckdb.CatalogException:  # not a CSV: nothing was rejected
            return ()
        return tuple(
            {
                "source": self.path,
                "line": int(line),
                "reason": f"cannot read the row: {one_line(msg)}",
                "hint": "fix the row, or the source's delimiter/quote options",
            }
            for line, msg in rows
        )


_MAPPERS: dict[tuple[str, str], Mapper] = {}


def map_records(unit: RecordsUnit) -> MappedBatch:
    """Map one batch of records; a process builds its ``Mapper`` (compiled SQL, lookups) once per mapping."""
    # the document's content, not its path: a file edited between two loads of one process must recompile
    key = (json.dumps(unit.doc.data, sort_keys=True, default=str), repr(sorted(unit.columns.items())))
    mapper = _MAPPERS.get(key)
    if mapper is None:
        mapper = _MAPPERS[key] = Mapper(unit.doc, unit.columns)
    return mapper.run(unit.source, unit.records, unit.first_row)
