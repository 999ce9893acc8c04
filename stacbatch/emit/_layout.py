"""Trees emit lays out itself: the staged catalog hierarchy rebuilt, or the items organised by year or month.

The tree is planned as nodes (the root Catalog, sub-Catalogs, Collections) with a folder each; items are written
from their staged JSON with only ``links`` rewritten, as in :mod:`stacbatch.emit._tree`, into the node they hang
from. Then every node's document is written with its links: ``root``, ``parent``, ``child`` and ``item`` from the
layout (titles of the targets on root/parent/child links, as PySTAC writes them), its other links kept.

* hierarchy: the staged root Catalog (its fields kept) when there is one, else a new root holding the staged roots;
  sub-catalogs as folders, collections under their catalogs, items under their collection or the catalog that
  linked them. Collections no staged tree places go under the root.
* ``year`` / ``month``: root -> collection -> ``<year>`` [-> ``<month>``] -> items, by the item's ``datetime`` or
  else ``start_datetime``; undated items in ``unknown``. Items without a collection get year catalogs of the root.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from stacbatch.emit._common import EmitResult, counted
from stacbatch.emit._target import TREE_NAMES, TreeWriter, kill_point
from stacbatch.engine import _fs, _sql
from stacbatch.engine._layout import encode as path_name
from stacbatch.errors import QueryError
from stacbatch.kernel._rows import DEFAULT_COLLECTION
from stacbatch.stage import Stage

ORGANIZE = ("collection", "year", "month")
_OPTS = orjson.OPT_INDENT_2
_JSON = "application/json"


@dataclass(eq=False)
class Node:
    kind: str
    doc: dict[str, Any]
    folder: str
    depth: int
    parent: Node | None = None
    cid: str | None = None
    children: list[Node] = field(default_factory=list)
    #: item hrefs relative to the node's folder
    items: list[str] = field(default_factory=list)
    #: folder names taken below this node (children and items), so that no two share one
    names: set[str] = field(default_factory=set)
    #: year / month sub-catalogs by name
    buckets: dict[str, Node] = field(default_factory=dict)

    @property
    def file(self) -> str:
        return "collection.json" if self.kind == "Collection" else "catalog.json"

    def add(self, kind: str, doc: dict[str, Any], name: str, cid: str | None = None) -> Node:
        name = self.take(name, kind)
        node = Node(kind, doc, _fs.join(self.folder, name), self.depth + 1, self, cid)
        self.children.append(node)
        return node

    def take(self, name: str, salt: str) -> str:
        """``name``, or one made unique among this node's folders (a sibling catalog and collection may share an
        id, and items of two collections under one catalog may too)."""
        if name in self.names:
            name = f"{name}!{xxhash.xxh3_64_hexdigest(f'{salt}/{name}'.encode('utf-8', 'surrogatepass'))[:8]}"
        self.names.add(name)
        return name


def _new_catalog(cid: str, description: str, title: str | None = None) -> dict[str, Any]:
    import pystac

    doc: dict[str, Any] = {
        "type": "Catalog",
        "id": cid,
        "stac_version": pystac.get_stac_version(),
        "description": description,
        "links": [],
    }
    if title is not None:
        doc["title"] = title
    return doc


def write_layout(
    stage: Stage,
    writer: TreeWriter,
    fs: Any,
    chosen: list[str],
    where: str | None,
    organize: str | None,
    catalog_id: str | None,
    title: str | None,
    description: str,
) -> EmitResult:
    from stacbatch.emit._tree import _collection_dict

    filtered = where is not None or len(chosen) < len(_known(stage))
    by_key: dict[str, Node] = {}
    colls: dict[str, Node] = {}
    wanted = set(chosen)
    staged = stage.manifest.catalogs if organize is None else {}
    roots = [k for k, e in staged.items() if e["parent"] is None]
    if len(roots) == 1 and staged[roots[0]]["type"] == "Catalog":
        root = Node("Catalog", _staged_catalog(stage, roots[0]), writer.root, 0)
        if catalog_id is not None:
            root.doc["id"] = catalog_id
        if title is not None:
            root.doc["title"] = title
        by_key[roots[0]] = root
        roots = staged[roots[0]]["children"]
    else:
        root = Node("Catalog", _new_catalog(catalog_id or "stacbatch", description, title), writer.root, 0)

    def attach(parent: Node, key: str) -> None:
        entry = staged[key]
        node = parent
        if entry["type"] == "Catalog":
            node = parent.add("Catalog", _staged_catalog(stage, key), path_name(entry["id"], TREE_NAMES))
        elif entry["id"] in wanted:  # a collection not emitted: what hangs from it goes up
            cid = entry["id"]
            node = colls[cid] = parent.add("Collection", _collection_dict(stage, cid), path_name(cid, TREE_NAMES), cid)
        by_key[key] = node
        for child in entry["children"]:
            attach(node, child)

    for key in roots:
        attach(root, key)
    for cid in chosen:
        if cid not in colls and cid != DEFAULT_COLLECTION:
            colls[cid] = root.add("Collection", _collection_dict(stage, cid), path_name(cid, TREE_NAMES), cid)

    result = EmitResult()
    con = stage.connection
    members = None
    if organize is None and stage.manifest.catalog_items:
        from stacbatch.stage import read_members

        members = read_members(stage.fs, stage.root, stage.manifest)
        con.register("_tree_members", members)
    try:
        for cid in chosen:
            home = colls.get(cid, root)
            _write_items(stage, fs, writer, cid, where, organize, home, by_key, colls, members, result)
    finally:
        if members is not None:
            con.unregister("_tree_members")
    if filtered:
        _prune(root)
    _write_docs(fs, writer, root, result)
    writer.items, writer.collections = result.items, result.collections
    return result


def _known(stage: Stage) -> set[str]:
    return {f["collection"] for f in stage.manifest.files} | set(stage.manifest.collections)


def _staged_catalog(stage: Stage, key: str) -> dict[str, Any]:
    from stacbatch.stage import catalog_doc

    doc = catalog_doc(stage, key)
    if doc is None:  # it could not be staged (a failure said why): a plain stand-in keeps the tree's shape
        cid = stage.manifest.catalogs[key]["id"]
        doc = _new_catalog(cid, f"Catalog {cid} (its staged JSON was not valid STAC JSON)")
    return doc


def _rows(
    stage: Stage, cid: str, where: str | None, organize: str | None, with_parent: bool, rows: int = 20_000
) -> Iterator[pa.RecordBatch]:
    view = stage.items_view([cid])
    cond = f" WHERE ({where})" if where else ""
    if organize in ("year", "month"):
        # microseconds since the epoch, UTC (a TIMESTAMPTZ would come back in the session's time zone)
        query = f"SELECT item, epoch_us(coalesce(datetime, start_datetime)) AS t FROM {view}{cond}"
    elif with_parent:
        query = (
            f"SELECT i.item, m.parent FROM (SELECT collection, id, item FROM {view}{cond}) i "
            "LEFT JOIN _tree_members m ON m.collection = i.collection AND m.id = i.id"
        )
    else:
        query = f"SELECT item FROM {view}{cond}"
    try:
        reader = stage.connection.sql(query).to_arrow_reader(rows)
    except duckdb.Error as err:
        raise QueryError(f"--where {where!r}: {_sql.one_line(err)}") from None
    yield from counted(reader)


def _bucket(home: Node, cid: str, year_n: int | None, month_n: int | None, organize: str) -> Node:
    """The year (or year/month) catalog of ``home`` for a date (None: ``unknown``), made on first use."""
    whose = f"of {cid}" if cid != DEFAULT_COLLECTION else "without a collection"
    if year_n is None:
        names = [("unknown", "unknown", f"Items {whose} with no datetime")]
    else:
        year = f"{year_n:04d}"
        names = [(year, year, f"Items {whose} from {year}")]
        if organize == "month":
            month = f"{month_n:02d}"
            names.append((month, f"{year}-{month}", f"Items {whose} from {year}-{month}"))
    node = home
    for name, node_id, text in names:
        sub = node.buckets.get(name)
        if sub is None:
            sub = node.buckets[name] = node.add("Catalog", _new_catalog(node_id, text), name)
        node = sub
    return node


def _item_links(node: Node, cid: str, colls: dict[str, Node]) -> list[dict[str, str]]:
    links = [{"rel": "root", "href": "../" * (node.depth + 1) + "catalog.json", "type": _JSON}]
    links.append({"rel": "parent", "href": f"../{node.file}", "type": _JSON})
    coll = colls.get(cid)
    if coll is not None:
        href = posixpath.relpath(_fs.join(coll.folder, "collection.json"), node.folder)
        links.append({"rel": "collection", "href": f"../{href}", "type": _JSON})
    return links


def _write_items(
    stage: Stage,
    fs: Any,
    writer: TreeWriter,
    cid: str,
    where: str | None,
    organize: str | None,
    home: Node,
    by_key: dict[str, Node],
    colls: dict[str, Node],
    members: pa.Table | None,
    result: EmitResult,
) -> None:
    from stacbatch.emit._tree import _write, dump_item, load_item, relink

    local = writer.local
    with_parent = members is not None and bool(pc.any(pc.equal(members["collection"], cid)).as_py())
    links_of: dict[int, list[dict[str, str]]] = {}
    made: set[str] = set()
    for batch in _rows(stage, cid, where, organize, with_parent):
        texts = batch.column(0).cast(pa.string()).to_pylist()
        if organize in ("year", "month"):
            when = batch.column(1).cast(pa.timestamp("us"))
            years, months = pc.year(when).to_pylist(), pc.month(when).to_pylist()
            targets = [_bucket(home, cid, y, m, organize) for y, m in zip(years, months, strict=True)]
        elif with_parent:
            targets = [home if p is None else by_key.get(p, home) for p in batch.column(1).to_pylist()]
        else:
            targets = [home] * len(texts)
        for text, node in zip(texts, targets, strict=True):
            item = load_item(text)
            tree_links = links_of.get(id(node))
            if tree_links is None:
                tree_links = links_of[id(node)] = _item_links(node, cid, colls)
            name = node.take(path_name(item["id"], TREE_NAMES), cid)
            relink(item, tree_links)
            folder = _fs.join(node.folder, name)
            href = _fs.join(folder, f"{name}.json")
            if local and folder not in made:
                os.makedirs(folder, exist_ok=True)
                made.add(folder)
            _write(fs, local, href, dump_item(item))
            writer.track([href])
            node.items.append(f"./{name}/{name}.json")
        result.items += len(texts)
        kill_point("emit:tree_partial")


def _prune(node: Node) -> bool:
    """With filters, collections and catalogs left with nothing go; True when ``node`` itself is empty."""
    node.children = [c for c in node.children if not _prune(c)]
    return node.parent is not None and not node.children and not node.items


def _link(rel: str, href: str, target: Node) -> dict[str, str]:
    link = {"rel": rel, "href": href, "type": _JSON}
    if isinstance(target.doc.get("title"), str):
        link["title"] = target.doc["title"]
    return link


def _write_docs(fs: Any, writer: TreeWriter, root: Node, result: EmitResult) -> None:
    from stacbatch.emit._tree import STRUCTURAL, _write, dump_item

    stack = [root]
    while stack:
        node = stack.pop()
        if node.kind == "Collection":
            result.collections += 1
        original = node.doc.get("links")
        kept = [
            lk
            for lk in (original if isinstance(original, list) else [])
            if not (isinstance(lk, dict) and lk.get("rel") in STRUCTURAL)
        ]
        links = [_link("root", "../" * node.depth + "catalog.json" if node.depth else "./catalog.json", root)]
        if node.parent is not None:
            links.append(_link("parent", f"../{node.parent.file}", node.parent))
        links += kept
        links += [_link("child", f"./{posixpath.basename(c.folder)}/{c.file}", c) for c in node.children]
        links += [{"rel": "item", "href": h, "type": "application/geo+json"} for h in node.items]
        path = _fs.join(node.folder, node.file)
        if writer.local:
            os.makedirs(node.folder, exist_ok=True)
        _write(fs, writer.local, path, dump_item({**node.doc, "links": links}))
        result.files.append(path)
        stack += reversed(node.children)
    writer.track(result.files)
