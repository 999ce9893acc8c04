"""A tabular source read through a mapping: DuckDB reads it in record batches in the loading process
(``MappedSource``); worker processes map them (``_run.map_records``)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from stacbatch.engine._sql import one_line
from stacbatch.engine._units import RecordsUnit
from stacbatch.errors import InputError
from stacbatch.mapping._doc import Doc
from stacbatch.mapping._read import connect, sniffed_csv_sql, source_format, source_sql
from stacbatch.mapping._run import Mapper, MappingRun, map_records

#: source records per batch: DuckDB's vectorised work wants thousands, and each batch has a fixed cost (the
#: prepared SELECT's execution set-up, ~16 ms); its reader hands out at most ~32k rows a batch, and gathering two
#: per unit measured no faster; memory stays bounded by it
BATCH_ROWS = 32_768


class MappedSource:
    """A tabular source read through a mapping: checked and compiled up front (errors before any work); its
    ``units()`` are batches of records that ``map_records`` turns into items, in worker processes or inline."""

    def __init__(self, path: str, doc: Doc, batch_rows: int = BATCH_ROWS, sample: bool = False) -> None:
        """``sample``: for an HTTP source, fetch the first page only (enough to compile and explain)."""
        self.path = path
        self.doc = doc
        self.batch_rows = batch_rows
        self.stats = MappingRun()
        con = connect(duckdb.connect())
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
        fmt = source_format(read_path, options)
        sniffed = sniffed_csv_sql(con, read_path, options) if fmt == "csv" else None
        self.select = sniffed or source_sql(read_path, options, rejects=True)
        self._read_path = read_path
        self._ndjson = fmt == "ndjson"
        self._bad: dict[int, tuple[int, str]] | None = None
        try:
            # Each run of a relation binds it again (a CSV read with auto-detection is sniffed again): the reader
            # opened here gives the Arrow schema of an empty batch and, later, the batches.
            self._rel = con.sql(self.select)
            self.columns = {str(c): str(t) for c, t in zip(self._rel.columns, self._rel.types, strict=True)}
            self._reader: pa.RecordBatchReader | None = self._rel.to_arrow_reader(self.batch_rows)
            empty = self._reader.schema.empty_table()
        except duckdb.Error as err:
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
            records, numbers, unreadable = self._unreadable(pa.Table.from_batches([batch]), row)
            held = RecordsUnit(self.path, row, records, self.doc, self.columns, unreadable, numbers, map_records)
            row += batch.num_rows
        rejected = self._rejected()
        if held is None and rejected:
            held = RecordsUnit(self.path, row, reader.schema.empty_table(), self.doc, self.columns, run=map_records)
        if held is not None:
            yield dataclasses.replace(held, rejected=held.rejected + rejected)

    def _unreadable(self, records: pa.Table, row: int) -> tuple[pa.Table, Any, tuple[dict[str, Any], ...]]:
        """An NDJSON batch without the records whose line is not a JSON object (DuckDB gave each a row of nulls),
        the record numbers of the rows left (None: all left) and a failure per line taken out."""
        n = records.num_rows
        if not self._ndjson or not n:
            return records, None, ()
        null = np.ones(n, dtype=bool)
        for column in records.columns:
            null &= column.is_null().to_numpy(zero_copy_only=False)
        if not null.any():
            return records, None, ()
        bad = self._bad_lines()
        numbers = np.arange(row, row + n)
        out = [int(i) for i in np.flatnonzero(null) if row + int(i) in bad]  # {} or {"a": null} are records
        if not out:
            return records, None, ()
        keep = np.ones(n, dtype=bool)
        keep[out] = False
        failures = tuple(
            {
                "source": self.path,
                "line": bad[row + i][0],
                "reason": bad[row + i][1],
                "hint": "fix the line: one JSON object per line",
            }
            for i in out
        )
        return records.filter(pa.array(keep)), numbers[keep], failures

    def _bad_lines(self) -> dict[int, tuple[int, str]]:
        """Record number -> (line number, reason) of each non-blank line that is not a JSON object (read once,
        only when a batch has a row of nulls: no cost for a clean file)."""
        if self._bad is None:
            import fsspec
            import orjson

            self._bad = {}
            record = 0
            with fsspec.open(self._read_path, "rb", compression="infer") as f:
                for line_no, line in enumerate(f, 1):
                    if not line.strip():
                        continue  # DuckDB skips blank lines too
                    record += 1
                    try:
                        value = orjson.loads(line)
                    except orjson.JSONDecodeError as err:
                        self._bad[record] = (line_no, f"not valid JSON: {err}")
                        continue
                    if not isinstance(value, dict):
                        self._bad[record] = (line_no, "not a JSON object")
        return self._bad

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
