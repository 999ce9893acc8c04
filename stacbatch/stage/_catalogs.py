"""Staged static-catalog trees: the Catalogs a load walked, where its Collections hang, which items hang from a
plain Catalog.

The manifest's ``catalogs`` maps node keys (the chain of encoded ids from the walk's root, see
:mod:`stacbatch.sources._catalog`) to ``{"type", "id", "parent", "children", "json"}``: ``type`` is ``Catalog``
or ``Collection`` (a Collection node places a staged collection, whose JSON stays in ``collections``), ``json``
the Catalog's content-addressed file under ``catalogs/`` (as staged Collections are kept). ``catalog_items`` names a
small Parquet table (parent, collection, id) of the items a plain Catalog links, and of the items a Collection
links that name no collection; every other item hangs from its collection. A stage without these entries has no
tree and emits as before.
"""

from __future__ import annotations

import functools
import io
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from stacbatch.engine import _fs, _json
from stacbatch.engine._layout import CATALOGS
from stacbatch.kernel import _canonical

if TYPE_CHECKING:
    from stacbatch.sources._catalog import CatalogTree
    from stacbatch.stage._manifest import Manifest
    from stacbatch.stage._parse import ParseResult
    from stacbatch.stage._runs import Run
    from stacbatch.stage._stage import Stage

MEMBERS_SCHEMA = pa.schema([("parent", pa.string()), ("collection", pa.string()), ("id", pa.string())])
_HINT = "STAC is JSON: write null or a finite number"


# -- in the parse workers -----------------------------------------------------------------------------------------


def parse_walked(job: tuple[int, Any], batch_size: int, run_id: str, place: Any) -> tuple[ParseResult, pa.Table | None]:
    """``parse_routed``, plus for the item files of a walked catalog the (parent, collection, id) of the items that
    hang from a node: each run of files a node linked is parsed on its own, so its rows are known without a per-item
    step (a file may hold no item, or several)."""
    from stacbatch.engine._units import FilesUnit
    from stacbatch.kernel._rows import DEFAULT_COLLECTION
    from stacbatch.sources._catalog import WalkedFilesUnit
    from stacbatch.stage._parse import ParseResult, parse_routed, parse_unit, place_rows

    index, unit = job
    if not isinstance(unit, WalkedFilesUnit) or all(key is None for key, _, _ in unit.groups):
        return parse_routed(job, batch_size, run_id, place), None
    res = ParseResult()
    runs: list[tuple[str | None, bool, int]] = []
    start = 0
    for key, unassigned_only, n in unit.groups:
        part = parse_unit(FilesUnit(unit.paths[start : start + n]), batch_size)
        start += n
        res.read += part.read
        res.failures += part.failures
        res.collections += part.collections
        res.skipped += part.skipped
        res.batches += part.batches
        runs.append((key, unassigned_only, sum(b.num_rows for b in part.batches)))
    table = place_rows(res, index, run_id, place)  # as parse_routed places its rows
    if table is None:
        return res, None
    members = []
    offset = 0
    for key, unassigned_only, rows in runs:
        if key is not None and rows:
            part_t = table.slice(offset, rows).select(["collection", "id"])
            if unassigned_only:
                part_t = part_t.filter(pc.equal(part_t["collection"], DEFAULT_COLLECTION))
            members.append(part_t.add_column(0, "parent", pa.repeat(pa.scalar(key), part_t.num_rows)))
        offset += rows
    return res, (pa.concat_tables(members).cast(MEMBERS_SCHEMA) if members else None)


def walked_parser(batch_size: int, run_id: str, place: Any) -> Any:
    return functools.partial(parse_walked, batch_size=batch_size, run_id=run_id, place=place)


# -- reading ------------------------------------------------------------------------------------------------------


def catalog_doc(stage: Stage, key: str) -> dict[str, Any] | None:
    """A staged Catalog's JSON as staged; None when it could not be staged (a generated one is emitted instead)."""
    rel = stage.manifest.catalogs.get(key, {}).get("json")
    if not rel:
        return None
    with stage.fs.open(_fs.join(stage.root, rel), "rb") as f:
        doc: dict[str, Any] = _json.loads(f.read())
    return doc


def read_members(fs: Any, root: str, manifest: Manifest) -> pa.Table:
    rel = manifest.catalog_items
    if not rel:
        return MEMBERS_SCHEMA.empty_table()
    with fs.open(_fs.join(root, rel), "rb") as f:
        return pq.read_table(io.BytesIO(f.read())).cast(MEMBERS_SCHEMA)


# -- staging (the loading process) ----------------------------------------------------------------------------


def stage_catalogs(
    stage: Stage,
    manifest: Manifest,
    trees: list[CatalogTree],
    members: list[pa.Table],
    staged_collections: set[str],
    run: Run,
) -> tuple[int, int]:
    """Fold the walked trees into the manifest (a node walked again replaces its entry, last wins) and the
    members table; return (catalogs staged, failures)."""
    trees = [t for t in trees if t.has_catalogs()]  # a lone collection.json walk has no tree to keep
    if not trees:
        return 0, 0
    nodes = manifest.catalogs
    walked: set[str] = set()
    staged = failed = 0
    for tree in trees:
        kept: set[str] = set()
        for key, node in tree.nodes.items():
            entry: dict[str, Any] = {"type": node.kind, "id": node.id, "parent": node.parent, "children": []}
            if node.kind == "Catalog":
                assert node.doc is not None
                bad = _json.non_finite_path(node.doc)
                if bad is None:
                    entry["json"] = _write_doc(stage, node.id, node.doc)
                    staged += 1
                else:  # kept in the tree (a generated Catalog is emitted), the failure says why
                    rec = {"source": node.label, "id": node.id, "field": bad, "reason": _json.NON_FINITE, "hint": _HINT}
                    run.fail(rec)
                    failed += 1
                    entry["json"] = None
            elif node.id not in staged_collections:
                continue  # the collection could not be staged (its failure is recorded): its children go up
            else:
                _unplace(nodes, node.id)  # a collection hangs in one place: where it was walked last
            nodes[key] = entry
            kept.add(key)
        walked |= kept
        for key, node in tree.nodes.items():
            if key in kept and key in nodes:
                nodes[key]["parent"] = _kept_parent(tree, node.parent, kept)
                nodes[key]["children"] = _kept_children(tree, node.children, kept)
    _drop_unreachable(nodes)
    manifest.catalogs = dict(sorted(nodes.items()))
    _merge_members(stage, manifest, members, walked)
    return staged, failed


def _kept_parent(tree: CatalogTree, parent: str | None, walked: set[str]) -> str | None:
    """The nearest ancestor that was kept (a collection that could not be staged leaves the tree)."""
    while parent is not None and parent not in walked:
        parent = tree.nodes[parent].parent
    return parent


def _kept_children(tree: CatalogTree, keys: list[str], walked: set[str]) -> list[str]:
    """Child keys of a walked node, a child that was not kept replaced by its own children."""
    out: list[str] = []
    for key in keys:
        out += [key] if key in walked else _kept_children(tree, tree.nodes[key].children, walked)
    return out


def _write_doc(stage: Stage, node_id: str, doc: dict[str, Any]) -> str:
    from stacbatch.engine._layout import encode

    rel = f"{CATALOGS}/{encode(node_id)}.{_canonical.content_hash(doc)[:12]}.json"
    path = _fs.join(stage.root, rel)
    # content-addressed, as staged Collections: an existing file already holds this content
    if not stage.fs.exists(path):
        stage.fs.makedirs(_fs.join(stage.root, CATALOGS), exist_ok=True)
        _fs.atomic_write_bytes(stage.fs, path, _json.dumps(doc))
    return rel


def _unplace(nodes: dict[str, Any], cid: str) -> None:
    """Take an earlier placement of collection ``cid`` out of the tree; its children take its place."""
    for key in [k for k, e in nodes.items() if e["type"] == "Collection" and e["id"] == cid]:
        entry = nodes.pop(key)
        parent = nodes.get(entry["parent"]) if entry["parent"] is not None else None
        for child in entry["children"]:
            if child in nodes:
                nodes[child]["parent"] = entry["parent"]
        if parent is not None:
            i = parent["children"].index(key) if key in parent["children"] else len(parent["children"])
            parent["children"][i : i + 1] = entry["children"]


def _drop_unreachable(nodes: dict[str, Any]) -> None:
    """Nodes no root reaches (their parent was walked again without them) leave the tree."""
    keep: set[str] = set()
    stack = [k for k, e in nodes.items() if e["parent"] is None]
    while stack:
        key = stack.pop()
        if key in keep or key not in nodes:
            continue
        keep.add(key)
        stack += nodes[key]["children"]
    for key in [k for k in nodes if k not in keep]:
        del nodes[key]
    for entry in nodes.values():
        entry["children"] = [c for c in entry["children"] if c in nodes]


def _merge_members(stage: Stage, manifest: Manifest, members: list[pa.Table], walked: set[str]) -> None:
    """Old rows of nodes walked again and of items placed again go; the new ones come (the last of an item's
    placements wins); rows of nodes no longer in the tree go."""
    new = pa.concat_tables(members) if members else MEMBERS_SCHEMA.empty_table()
    if new.num_rows:  # last wins within this load
        new = new.append_column("_i", pa.arange(0, new.num_rows))
        last = new.group_by(["collection", "id"]).aggregate([("_i", "max")])
        new = new.take(pc.sort_indices(last["_i_max"])).drop_columns(["_i"])
    old = read_members(stage.fs, stage.root, manifest)
    if old.num_rows:
        old = old.filter(pc.invert(pc.is_in(old["parent"], pa.array(sorted(walked), pa.string()))))
        if new.num_rows:
            old = old.join(new.select(["collection", "id"]), ["collection", "id"], join_type="left anti")
    table = pa.concat_tables([old.select(MEMBERS_SCHEMA.names), new.select(MEMBERS_SCHEMA.names)]).cast(MEMBERS_SCHEMA)
    table = table.filter(pc.is_in(table["parent"], pa.array(sorted(manifest.catalogs), pa.string())))
    if not table.num_rows:
        manifest.catalog_items = None
        return
    table = table.sort_by([("parent", "ascending"), ("collection", "ascending"), ("id", "ascending")])
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    data = sink.getvalue()
    import xxhash

    rel = f"{CATALOGS}/items.{xxhash.xxh3_64_hexdigest(data)[:12]}.parquet"
    path = _fs.join(stage.root, rel)
    if not stage.fs.exists(path):
        stage.fs.makedirs(_fs.join(stage.root, CATALOGS), exist_ok=True)
        _fs.atomic_write_bytes(stage.fs, path, data)
    manifest.catalog_items = rel
