"""stac-geoparquet out, one file per collection, written by stac-geoparquet itself.

stac-geoparquet's format is columnar (properties become columns), so it is not lossless for every item (see the
README): datetimes are held to microseconds (longer fractions are truncated before conversion), absent keys come
back as nulls. Its schema is unified over the whole collection with ``ChunksToDisk`` to keep memory bounded.
Each file replaces the old one only once complete.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import orjson

from stacbatch.emit._common import EmitResult, begin_progress, check_where, iter_items, selected_collections
from stacbatch.emit._target import kill_point, local_file_output, refuse_stage_target
from stacbatch.engine import _fs, _sql
from stacbatch.engine._layout import encode as path_name
from stacbatch.errors import InputError
from stacbatch.stage import Stage

#: RFC 3339 text with more than 6 fractional digits (stac-geoparquet stores microseconds and refuses these).
_SUBMICRO = re.compile(r"^(\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d\.\d{6})\d+(.*)$")


def _for_stac_geoparquet(item: dict[str, Any]) -> dict[str, Any]:
    """Truncate datetime strings to microseconds, the precision stac-geoparquet's timestamp columns hold."""
    props = item.get("properties")
    if isinstance(props, dict):
        for key, value in props.items():
            if isinstance(value, str) and len(value) > 27 and (m := _SUBMICRO.match(value)):
                props[key] = m.group(1) + m.group(2)
    return item


def _dicts(stage: Stage, cid: str, where: str | None) -> Iterator[dict[str, Any]]:
    for batch in iter_items(stage, cid, where):
        for text in batch.column(0).cast("string").to_pylist():
            yield _for_stac_geoparquet(orjson.loads(text))
        kill_point("emit:file_partial")


def emit_geoparquet(
    stage: Stage, to: str, *, collections: list[str] | None = None, where: str | None = None
) -> EmitResult:
    from stac_geoparquet.arrow import parse_stac_items_to_arrow, to_parquet

    t0 = time.perf_counter()
    chosen = selected_collections(stage, collections)
    check_where(stage, where)
    begin_progress(stage, chosen, where, "emit geoparquet")
    fs, root = _fs.filesystem(to)
    refuse_stage_target(stage, fs, root, to)
    fs.makedirs(root, exist_ok=True)
    result = EmitResult()
    for cid in chosen:
        view = stage.items_view([cid])
        count = stage.connection.execute(
            f"SELECT count(*) FROM {view}" + (f" WHERE ({where})" if where else "")
        ).fetchone()
        if not count or not count[0]:
            continue
        path = _fs.join(root, f"{path_name(cid)}.parquet")
        coll = stage.collection_json(cid)
        with tempfile.TemporaryDirectory(prefix="stacbatch-sgp-") as tmp, local_file_output(fs, path) as out:
            try:
                reader = parse_stac_items_to_arrow(_dicts(stage, cid, where), schema="ChunksToDisk", tmpdir=tmp)
                kwargs: dict[str, Any] = {"collections": {cid: coll}} if coll else {}
                to_parquet(reader, out, **kwargs)
            except Exception as err:  # stac-geoparquet raises many kinds; name the collection and move on
                raise InputError(
                    f"emit --format geoparquet: stac-geoparquet cannot convert collection {cid!r}: "
                    f"{_sql.one_line(err)[:300]}; use --format ndjson for a lossless copy"
                ) from None
        result.items += count[0]
        result.collections += 1
        result.files.append(path)
    result.seconds = time.perf_counter() - t0
    return result
