"""``validate --engine stac-valid``: the reference validator itself (stac-validator's maintained successor,
``pip install 'stacbatch[reference]'``), offline through the same schema folders. Slow (tens of objects a second):
for users who want its exact verdicts and messages."""

from __future__ import annotations

import copy
import os
import tempfile
import time
from typing import Any

import orjson
import pyarrow as pa

from stacbatch.engine._layout import new_run_id
from stacbatch.errors import InputError
from stacbatch.stage import Stage, catalog_doc
from stacbatch.stage import load as load_to_stage
from stacbatch.stage._verdicts import VERDICT_SCHEMA
from stacbatch.validate._check import Options
from stacbatch.validate._run import ValidationResult, _summarise, _write_failures, is_stage
from stacbatch.validate._schemas import SchemaStore


def reference_verdict(obj: Any, schema_map: dict[str, str]) -> tuple[bool, str | None, str]:
    """stac-valid's verdict on one object: (valid, the schema it names, its message)."""
    try:
        from stac_validator.validate import StacValidate
    except ImportError:
        raise InputError(
            "--engine stac-valid needs the reference validator: pip install 'stacbatch[reference]'"
        ) from None
    sv = StacValidate(schema_map=schema_map)  # a new one per object: an instance keeps state between calls
    valid = bool(sv.validate_dict(copy.deepcopy(obj)))  # it rewrites parts of what it is given
    msg = sv.message[-1] if sv.message else {}
    return valid, msg.get("failed_schema"), str(msg.get("error_message") or msg.get("error_type") or "")


def schema_map(options: Options) -> dict[str, str]:
    store = SchemaStore(options.source)
    return {url: str(path) for url, path in store.files.items()}


def validate_with_stac_valid(
    targets: list[str], options: Options, collections: list[str] | None = None, failures: str | None = None
) -> ValidationResult:
    t0 = time.perf_counter()
    mapping = schema_map(options)
    run_id = new_run_id()
    with tempfile.TemporaryDirectory(prefix="stacbatch-validate-") as tmp:
        if len(targets) == 1 and is_stage(targets[0]):
            stage, label = Stage.open(targets[0]), targets[0]
        else:
            load_to_stage(os.path.join(tmp, "stage"), targets)
            stage, label = Stage.open(os.path.join(tmp, "stage")), targets[0]
        cols: dict[str, list[Any]] = {f.name: [] for f in VERDICT_SCHEMA}
        chosen = collections or sorted(stage.manifest.collections)
        objs: list[tuple[str, str | None, str | None, Any]] = []
        for cid in chosen:
            for text, oid in stage.sql("SELECT item::VARCHAR, id FROM items WHERE collection = ?", [cid]).fetchall():
                objs.append(("item", cid, oid, orjson.loads(text)))
            doc = stage.collection_json(cid)
            if doc is not None:
                objs.append(("collection", cid, cid, doc))
        if collections is None:
            for key, meta in sorted(stage.manifest.catalogs.items()):
                if meta.get("type") == "Catalog":
                    doc = catalog_doc(stage, key)
                    if doc is not None:
                        objs.append(("catalog", None, str(doc.get("id")), doc))
        for kind, coll, oid, obj in objs:
            valid, failed, message = reference_verdict(obj, mapping)
            cols["run_id"].append(run_id)
            cols["kind"].append(kind)
            cols["collection"].append(coll)
            cols["id"].append(oid)
            cols["valid"].append(valid)
            cols["rule"].append(None if valid else (failed or "stac-valid"))
            cols["path"].append(None if valid else "")
            cols["message"].append(None if valid else message)
            cols["source"].append(label)
    res = _summarise(run_id, pa.table(cols, schema=VERDICT_SCHEMA))
    if failures:
        _write_failures(failures, res.verdicts)
        res.failures_file = failures
    res.seconds = time.perf_counter() - t0
    return res
