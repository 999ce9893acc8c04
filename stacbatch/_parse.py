"""Parse units into record batches. Runs in worker processes (or inline for small inputs): pure, picklable I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from stacbatch import _json
from stacbatch._rows import BatchBuilder, ItemError
from stacbatch.sources import DictsUnit, FilesUnit, LinesUnit, Unit


@dataclass
class ParseResult:
    batch: pa.RecordBatch | None
    read: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    collections: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: Documents that are neither items nor collections (catalogs in a folder tree): not items, not failures.
    skipped: int = 0


def _failure(
    source: str,
    reason: str,
    *,
    line: int | None = None,
    item_id: Any = None,
    field: str | None = None,
    hint: str = "",
) -> dict[str, Any]:
    rec: dict[str, Any] = {"source": source}
    if line is not None:
        rec["line"] = line
    if isinstance(item_id, str):
        rec["id"] = item_id
    if field:
        rec["field"] = field
    rec["reason"] = reason
    if hint:
        rec["hint"] = hint
    return rec


def _add(builder: BatchBuilder, res: ParseResult, obj: Any, source: str, line: int | None) -> None:
    res.read += 1
    try:
        builder.add(obj)
    except ItemError as err:
        item_id = obj.get("id") if isinstance(obj, dict) else None
        res.failures.append(_failure(source, str(err), line=line, item_id=item_id, field=err.field, hint=err.hint))
    except RecursionError:
        res.failures.append(_failure(source, "item is nested too deeply", line=line))


def parse_unit(unit: Unit) -> ParseResult:
    builder = BatchBuilder()
    res = ParseResult(batch=None)
    if isinstance(unit, LinesUnit):
        for n, raw in enumerate(unit.lines, unit.first_line):
            if not raw.strip():
                continue
            try:
                obj = _json.loads(raw)
            except ValueError as err:
                res.read += 1
                res.failures.append(
                    _failure(
                        unit.source,
                        f"not valid JSON ({err})",
                        line=n,
                        hint="fix or remove the line",
                    )
                )
                continue
            _add(builder, res, obj, unit.source, n)
    elif isinstance(unit, DictsUnit):
        for label, obj in zip(unit.labels, unit.items, strict=True):
            _add(builder, res, obj, label, None)
    elif isinstance(unit, FilesUnit):
        for path in unit.paths:
            _parse_file(path, builder, res)
    if len(builder):
        res.batch = builder.finish()
    return res


def _parse_file(path: str, builder: BatchBuilder, res: ParseResult) -> None:
    from stacbatch import _fs

    try:
        fs, p = _fs.filesystem(path)
        with fs.open(p, "rb", compression="gzip" if p.endswith(".gz") else None) as f:
            data = f.read()
    except (OSError, EOFError) as err:
        res.read += 1
        res.failures.append(_failure(path, f"cannot read: {err}", hint="check the file exists and is readable"))
        return
    try:
        doc = _json.loads(data)
    except ValueError as err:
        res.read += 1
        res.failures.append(_failure(path, f"not valid JSON ({err})", hint="fix the file"))
        return
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "Collection":
        res.collections.append((path, doc))
    elif kind == "Catalog":
        res.skipped += 1
    elif kind == "FeatureCollection" and isinstance(doc.get("features"), list):
        for i, obj in enumerate(doc["features"]):
            _add(builder, res, obj, f"{path}#features[{i}]", None)
    elif isinstance(doc, list):
        for i, obj in enumerate(doc):
            _add(builder, res, obj, f"{path}#[{i}]", None)
    else:
        _add(builder, res, doc, path, None)
