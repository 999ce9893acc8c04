"""One process's validation of STAC objects: schemas (jsonschema-rs, compiled once per process) and the named
checks, for a batch of objects at a time. Worker processes run ``check_file`` on stage data files."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from stacbatch.engine import _json
from stacbatch.stage._verdicts import VERDICT_SCHEMA
from stacbatch.validate._checks import DEFAULT_CHECKS, run_checks
from stacbatch.validate._engine import Engine, Finding
from stacbatch.validate._objects import Problem, schemas_of
from stacbatch.validate._schemas import SchemaSource

_PREFIX = re.compile(r"^([a-z][a-z0-9_\-]*):[A-Za-z0-9_]")
#: the version in an extension's schema URL (``.../classification/v2.0.0/schema.json``)
_VERSION = re.compile(r"/v\d+\.\d+\.\d+(?:-[\w.]+)?/")


@dataclass(frozen=True)
class Options:
    """What a validation checks (small and picklable: each worker process builds its own ``Checker``)."""

    source: SchemaSource = field(default_factory=SchemaSource)
    checks: tuple[str, ...] = DEFAULT_CHECKS
    #: custom schemas: (collection, or None for every object; the schema file's absolute path)
    custom: tuple[tuple[str | None, str], ...] = ()
    #: schema validation on (off: the named checks only)
    schemas: bool = True


class Checker:
    """Validators and check state of one process for one set of options."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.engine = Engine(options.source, formats="formats" in options.checks)
        self.enabled = set(options.checks) - {"formats"}
        self._prefixes: dict[str, frozenset[str]] = {}
        self._known: dict[str, str] | None = None
        self.custom: list[tuple[str | None, str]] = []
        for collection, path in options.custom:
            url = Path(path).resolve().as_uri()
            try:
                doc = orjson.loads(Path(path).read_bytes())
            except (OSError, orjson.JSONDecodeError):
                doc = None
            self.engine.store.add(url, doc)
            self.custom.append((collection, url))

    def prefixes_of(self, url: str) -> frozenset[str]:
        """The field prefixes an extension schema defines (``eo`` for ``eo:bands``)."""
        found = self._prefixes.get(url)
        if found is None:
            names: set[str] = set()
            doc = self.engine.store.get(url)
            if doc is None and _VERSION.search(url):
                # not available (reported as such): it defines what the other versions of the extension do, so
                # its fields are not also called undeclared (classification v2.0.0 after a migration, say)
                base = _VERSION.split(url)[0]
                for other in self.engine.store.urls():
                    if other != url and _VERSION.search(other) and _VERSION.split(other)[0] == base:
                        _field_names(self.engine.store.get(other), names)
            else:
                _field_names(doc, names)
            found = frozenset(m.group(1) for n in names if (m := _PREFIX.match(n)))
            self._prefixes[url] = found
        return found

    @property
    def known(self) -> dict[str, str]:
        """Prefix -> the newest schema URL in the store that defines it."""
        if self._known is None:
            self._known = {}
            for url in self.engine.store.urls():
                for prefix in self.prefixes_of(url):
                    self._known[prefix] = url  # sorted URLs: the last (newest version) wins
        return self._known

    def objects(
        self, objs: list[Any], collections: list[str | None], wkb: list[bytes | None] | None = None
    ) -> list[list[Finding]]:
        """The findings for each object (empty: valid). ``wkb``: their geometries as the stage holds them."""
        results: list[list[Finding]] = []
        extensions: list[list[str]] = []
        for obj, collection in zip(objs, collections, strict=True):
            found: list[Finding] = []
            exts: list[str] = []
            try:
                _kind, core, exts = schemas_of(obj)
            except Problem as p:
                found.append(Finding(p.rule, "", p.message))
            else:
                if self.options.schemas:
                    found += self.engine.check(core, obj)
                    for url in exts:
                        found += self.engine.check(url, obj)
                for scope, url in self.custom:
                    if scope is None or scope == collection:
                        found += self.engine.check(url, obj)
            results.append(found)
            extensions.append(exts)
        if self.enabled:
            for found, more in zip(
                results, run_checks(objs, extensions, self.enabled, self.prefixes_of, self.known, wkb), strict=True
            ):
                found += more
        return results


def _field_names(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if (k == "properties" and isinstance(v, dict)) or (k == "required" and isinstance(v, list)):
                out.update(str(n) for n in v)
            _field_names(v, out)
    elif isinstance(node, list):
        for v in node:
            _field_names(v, out)


_CHECKERS: dict[Options, Checker] = {}


def checker(options: Options) -> Checker:
    """This process's checker for these options (built once)."""
    found = _CHECKERS.get(options)
    if found is None:
        found = _CHECKERS[options] = Checker(options)
    return found


def kind_name(obj: Any) -> str:
    t = obj.get("type") if isinstance(obj, dict) else None
    return {"Feature": "item", "Collection": "collection", "Catalog": "catalog"}.get(t, "unknown")  # type: ignore[arg-type]


def verdict_rows(
    run_id: str,
    objs: list[Any],
    collections: list[str | None],
    ids: list[str | None],
    findings: list[list[Finding]],
    sources: list[str],
) -> pa.Table:
    """One row per valid object, one per finding of an invalid one (``VERDICT_SCHEMA``)."""
    cols: dict[str, list[Any]] = {f.name: [] for f in VERDICT_SCHEMA}
    for obj, collection, oid, found, source in zip(objs, collections, ids, findings, sources, strict=True):
        kind = kind_name(obj)
        for f in found or [None]:  # type: ignore[list-item]
            cols["run_id"].append(run_id)
            cols["kind"].append(kind)
            cols["collection"].append(collection)
            cols["id"].append(oid)
            cols["valid"].append(f is None)
            cols["rule"].append(f.rule if f else None)
            cols["path"].append(f.path if f else None)
            cols["message"].append(f.message if f else None)
            cols["source"].append(source)
    return pa.table(cols, schema=VERDICT_SCHEMA)


#: every byte to "0", digits to "1": a run of 19 digits is then a plain substring search
_DIGIT_FLAGS = bytes(49 if 48 <= b <= 57 else 48 for b in range(256))
_LONG_RUN = b"1" * 19


def parse_texts(texts: pa.Array) -> list[Any]:
    """Each JSON text of a string column as Python objects, read by orjson straight from the column's buffer. A
    text with a digit run of 19 or more (an integer orjson would read as a float) goes through ``_json.loads``,
    which keeps it exact; such runs are found for the whole column at once."""
    texts = texts.cast(pa.large_string()) if texts.type != pa.large_string() else texts
    _, off_buf, data_buf = texts.buffers()
    offsets = np.frombuffer(off_buf, np.int64)[texts.offset : texts.offset + len(texts) + 1]
    bounds = offsets.tolist()
    view = memoryview(data_buf) if data_buf is not None else memoryview(b"")
    flags = bytes(view[bounds[0] : bounds[-1]]).translate(_DIGIT_FLAGS) if len(texts) else b""
    exact: set[int] = set()
    at = flags.find(_LONG_RUN)
    while at >= 0:
        row = int(np.searchsorted(offsets, at + bounds[0], side="right")) - 1
        exact.add(row)
        at = flags.find(_LONG_RUN, bounds[row + 1] - bounds[0])
    out: list[Any] = []
    for i in range(len(texts)):
        chunk = view[bounds[i] : bounds[i + 1]]
        out.append(_json.loads(bytes(chunk)) if i in exact else orjson.loads(chunk))
    return out


@dataclass(frozen=True)
class FileJob:
    """The items of one stage data file (``rows``: only these row numbers) to check."""

    fs: Any
    path: str
    label: str
    rows: tuple[int, ...] | None
    options: Options
    run_id: str
    #: items to check (the file's rows, or len(rows))
    count: int = 0


#: items parsed into Python objects at a time (an item is ~10x its text as objects: bounds a worker's memory)
SLICE_ROWS = 2_000


def _slices(job: FileJob, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The job's rows of the file, ``SLICE_ROWS`` at most at a time, read a row group at a time (a worker never
    holds a whole file's items)."""
    with job.fs.open(job.path, "rb") as f:
        pf = pq.ParquetFile(f)
        meta = pf.metadata
        starts = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        wanted = np.asarray(job.rows, dtype=np.int64) if job.rows is not None else None
        for g in range(meta.num_row_groups):
            if wanted is not None:
                lo, hi = np.searchsorted(wanted, [starts[g], starts[g + 1]])
                if lo == hi:
                    continue
                local = wanted[lo:hi] - starts[g]
                table = pf.read_row_group(g, columns=columns).take(pa.array(local))
                yield from table.to_batches(max_chunksize=SLICE_ROWS)
            else:
                yield from pf.iter_batches(batch_size=SLICE_ROWS, row_groups=[g], columns=columns)


def check_file(job: FileJob) -> pa.Table:
    """A worker's task: read the file's keys and item texts, check the items a slice at a time, return the
    verdict rows."""
    check = checker(job.options)
    geometry = bool(check.enabled & {"geometry", "bbox"})
    parts = []
    # Parsed items are trees of dicts and lists with no cycles, freed by reference counting; with the cyclic
    # collector on, each slice's ~100k new containers set it off again and again over all of them (2.5-3x slower)
    collecting = gc.isenabled()
    gc.disable()
    try:
        for batch in _slices(job, ["collection", "id", "item", *(["geometry"] if geometry else [])]):
            texts = batch.column("item")
            if isinstance(texts.type, pa.BaseExtensionType):
                texts = texts.storage
            collections = batch.column("collection").to_pylist()
            objs = parse_texts(texts)
            wkb = batch.column("geometry").to_pylist() if geometry else None
            found = check.objects(objs, collections, wkb)
            ids = batch.column("id").to_pylist()
            parts.append(verdict_rows(job.run_id, objs, collections, ids, found, [job.label] * len(objs)))
            del objs
    finally:
        if collecting:
            gc.enable()
    return pa.concat_tables(parts) if parts else VERDICT_SCHEMA.empty_table()
