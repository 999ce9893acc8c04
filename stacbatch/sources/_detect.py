"""Turn the user's SOURCE arguments into sources that yield parse units.

Everything that can be checked before work starts (existence, readability, kind) is checked here, so a bad path
fails with one line and nothing written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stacbatch.engine import _fs, _json
from stacbatch.engine._pool import default_workers
from stacbatch.engine._units import DictsUnit, FilesUnit, LinesUnit, RangeUnit, Unit
from stacbatch.errors import InputError

NDJSON_SUFFIXES = (".ndjson", ".jsonl", ".geojsonl", ".ndgeojson")
JSON_SUFFIXES = (".json", ".geojson")
PARQUET_SUFFIXES = (".parquet", ".geoparquet", ".pq")
#: JSON documents up to this size are read whole (fast); larger ones are streamed with ijson.
WHOLE_DOC_LIMIT = 64 * 1024 * 1024


@dataclass
class SourcePlan:
    """Validated sources. ``units()`` streams parse units; collections found while walking land in ``collections``."""

    paths: list[str]
    batch_size: int
    collections: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: (source label, location or "", reason) for sources or documents that could not be read at all.
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    total_bytes: int = 0
    #: options for STAC API sources (URLs); their sources, once started, with stats and failure records
    api: Any = None
    api_sources: list[Any] = field(default_factory=list)
    #: files read through a mapping (``load --mapping``), prepared: columns known, mapping compiled and checked
    mapped_sources: list[Any] = field(default_factory=list)
    #: stacbatch stages found inside source folders, left out of the load
    skipped_stages: list[str] = field(default_factory=list)
    #: static catalog trees walked (``stacbatch.sources._catalog.CatalogTree``), staged beside the collections
    catalog_trees: list[Any] = field(default_factory=list)

    def units(self) -> Iterator[Unit]:
        if self.mapped_sources:  # with a mapping, every source is mapped
            for mapped in self.mapped_sources:
                yield from mapped.units()
            return
        for path in self.paths:
            yield from _units_for(path, self)


def plan_sources(
    sources: list[str], batch_size: int, api: Any = None, mapped: Callable[[str, int], Any] | None = None
) -> SourcePlan:
    """Check the sources and plan their reading. ``mapped``: with a mapping, makes each source path a mapped
    source (rows per batch as second argument); the mapping layer provides it, sources do not import it."""
    if not sources:
        raise InputError("load: give at least one SOURCE (a file, folder, catalog or stac-geoparquet file)")
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    total = 0
    prepared: list[Any] = []
    if mapped is not None:  # tabular files through a mapping
        made = [mapped(src, max(batch_size, 50_000)) for src in sources]
        for src in sources:
            total += os.path.getsize(src) if os.path.isfile(src) else 0
        return SourcePlan(paths=list(sources), batch_size=batch_size, total_bytes=total, mapped_sources=made)
    for src in sources:
        if src.startswith(("http://", "https://")):
            from stacbatch.api import ApiOptions, ApiSource

            api = api if api is not None else ApiOptions()
            source = ApiSource(src, api)
            source.prepare()
            prepared.append(source)
            continue
        fs, path = _fs.filesystem(src)
        try:
            info = fs.info(path)
        except FileNotFoundError:
            raise InputError(f"{src}: no such file or folder") from None
        except PermissionError:
            raise InputError(f"{src}: permission denied") from None
        if info["type"] == "directory":
            total += sum(int(i.get("size") or 0) for i in fs.find(path, detail=True).values())
        else:
            if _fs.is_local(fs) and not os.access(path, os.R_OK):
                raise InputError(f"{src}: permission denied")
            name = path.lower().removesuffix(".gz")
            if not name.endswith(NDJSON_SUFFIXES + JSON_SUFFIXES + PARQUET_SUFFIXES):
                raise InputError(
                    f"{src}: unknown source kind; expected .ndjson/.jsonl (optionally .gz), .json, .geojson, "
                    ".parquet, or a folder"
                )
            total += int(info.get("size") or 0)
    return SourcePlan(paths=list(sources), batch_size=batch_size, total_bytes=total, api=api, api_sources=prepared)


def _units_for(src: str, plan: SourcePlan) -> Iterator[Unit]:
    if src.startswith(("http://", "https://")):
        source = next(s for s in plan.api_sources if s.url == src)
        yield from source.units()
        plan.collections += [(src, c) for c in source.collections]
        return
    fs, path = _fs.filesystem(src)
    if fs.isdir(path):
        yield from _folder_units(fs, path, plan)
        return
    name = path.lower().removesuffix(".gz")
    if name.endswith(NDJSON_SUFFIXES):
        yield from _ndjson_units(fs, path, src, plan)
    elif name.endswith(PARQUET_SUFFIXES):
        from stacbatch.sources._parquet import parquet_units

        yield from parquet_units(fs, path, src, plan)
    else:
        yield from _document_units(fs, path, src, plan)


def _open(fs: Any, path: str) -> Any:
    return fs.open(path, "rb", compression="gzip" if path.lower().endswith(".gz") else None)


#: Bytes per NDJSON parse unit: big enough to amortise inter-process hand-off, small enough to bound memory.
CHUNK_BYTES = 4 * 1024 * 1024
#: Local files are cut into ranges of this many CHUNK_BYTES: a worker reads its range itself and spills its
#: rows per partition, so bigger ranges mean fewer, larger spill files (and nothing crosses the pipe).
RANGE_CHUNKS = 8


def _ndjson_units(fs: Any, path: str, label: str, plan: SourcePlan) -> Iterator[Unit]:
    """Cut the file into blocks of whole lines without iterating lines in Python (workers split them)."""
    if _fs.is_local(fs) and not path.lower().endswith(".gz"):
        yield from _range_units(path, label, plan)
        return
    line = 1
    rest = b""
    try:
        with _open(fs, path) as f:
            while True:
                block = f.read(CHUNK_BYTES)
                if not block:
                    break
                data = rest + block
                cut = data.rfind(b"\n") + 1
                if cut == 0:  # one line longer than a block: keep reading
                    rest = data
                    continue
                rest = data[cut:]
                yield LinesUnit(label, line, data[:cut])
                line += data.count(b"\n", 0, cut)
            if rest.strip():
                yield LinesUnit(label, line, rest)
    except (OSError, EOFError) as err:
        plan.problems.append((label, f"line {line}", f"cannot read: {err}"))


def _range_units(path: str, label: str, plan: SourcePlan) -> Iterator[Unit]:
    """Local uncompressed NDJSON: cut at the first newline after every CHUNK_BYTES * RANGE_CHUNKS, reading only
    a few bytes at each cut. Workers read their ranges and count their lines.

    The last ranges taper (each a quarter of what is left per worker pair, down to CHUNK_BYTES), so the workers
    finish together instead of one parsing a last full range while the others wait (~0.2 s at 100k items)."""
    taper = 2 * default_workers()
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            offset = 0
            while offset < size:
                length = min(CHUNK_BYTES * RANGE_CHUNKS, max(CHUNK_BYTES, (size - offset) // taper))
                end = min(offset + length, size)
                if end < size:
                    f.seek(end)
                    while True:
                        piece = f.read(64 * 1024)
                        if not piece:
                            end = size
                            break
                        i = piece.find(b"\n")
                        if i >= 0:
                            end += i + 1
                            break
                        end += len(piece)
                yield RangeUnit(label, path, offset, end - offset)
                offset = end
    except OSError as err:
        plan.problems.append((label, "", f"cannot read: {err}"))


def _stage_roots(fs: Any, paths: list[str]) -> list[str]:
    """Folders among ``paths`` that are stacbatch stages (a lock file, or a manifest of ours): their Parquet files
    are not stac-geoparquet, and a stage inside the folder being loaded must not be read into itself."""
    from stacbatch.engine._layout import LOCK, MANIFEST

    roots = []
    for path in paths:
        folder, _, name = path.rpartition("/")
        if name == LOCK:
            roots.append(folder)
        elif name == MANIFEST:
            with fs.open(path, "rb") as f:
                if b'"stacbatch-stage"' in f.read(1 << 20):
                    roots.append(folder)
    return sorted(set(roots))


def _folder_units(fs: Any, root: str, plan: SourcePlan) -> Iterator[Unit]:
    batch: list[str] = []
    found = sorted(fs.find(root))
    stages = tuple(f"{s}/" for s in _stage_roots(fs, found))
    for stage in stages:
        plan.skipped_stages.append(stage.rstrip("/"))
    for path in found:
        if stages and path.startswith(stages):
            continue
        low = path.lower().removesuffix(".gz")
        label = path if _fs.is_local(fs) else fs.unstrip_protocol(path)
        if low.endswith(NDJSON_SUFFIXES):
            yield from _ndjson_units(fs, path, label, plan)
        elif low.endswith(PARQUET_SUFFIXES):
            from stacbatch.sources._parquet import parquet_units

            yield from parquet_units(fs, path, label, plan)
        elif low.endswith(JSON_SUFFIXES):
            batch.append(label)
            if len(batch) >= plan.batch_size:
                yield FilesUnit(batch)
                batch = []
    if batch:
        yield FilesUnit(batch)


def _document_units(fs: Any, path: str, label: str, plan: SourcePlan) -> Iterator[Unit]:
    """One JSON file: an item, a FeatureCollection/ItemCollection, an array, or a static catalog root."""
    try:
        size = int(fs.size(path) or 0)
    except OSError as err:
        plan.problems.append((label, "", f"cannot read: {err}"))
        return
    if size > WHOLE_DOC_LIMIT and not path.lower().endswith(".gz"):
        from stacbatch.sources._stream import stream_document_units

        yield from stream_document_units(fs, path, label, plan)
        return
    try:
        with _open(fs, path) as f:
            data = f.read()
    except (OSError, EOFError) as err:
        plan.problems.append((label, "", f"cannot read: {err}"))
        return
    try:
        doc = _json.loads(data)
    except ValueError as err:
        # Maybe NDJSON under a .json name.
        if data.count(b"\n") > 1:
            yield from _ndjson_units(fs, path, label, plan)
            return
        plan.problems.append((label, "1", f"not valid JSON ({err})"))
        return
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind in ("Catalog", "Collection"):
        from stacbatch.sources._catalog import catalog_units

        yield from catalog_units(fs, path, label, doc, plan)
        return
    yield from _doc_items(label, doc, plan)


def _doc_items(label: str, doc: Any, plan: SourcePlan) -> Iterator[Unit]:
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        feats = doc.get("features")
        if not isinstance(feats, list):
            plan.problems.append((label, "", "FeatureCollection without a features array"))
            return
        items, where = feats, "features"
    elif isinstance(doc, list):
        items, where = doc, ""
    else:
        items, where = [doc], None
    size = plan.batch_size
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        if where is None:
            labels = [label]
        else:
            labels = [f"{label}#{where}[{start + i}]" if where else f"{label}#[{start + i}]" for i in range(len(chunk))]
        yield DictsUnit(label, labels, chunk)
