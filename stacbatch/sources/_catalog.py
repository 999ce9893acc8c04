"""Static catalogs: walk ``child`` and ``item`` links from a catalog.json / collection.json, and record the tree.

The tree (catalogs, where each collection hangs, which catalog links which items) is kept so that emit can rebuild
it. Nodes are keyed by the chain of their encoded ids from the walk's root (``root/a/2020``): ids may repeat in a
tree, chains do not. Catalog documents are few and read here; items are only listed (parsed in workers, in
``FilesUnit`` batches as before), each batch saying which node linked which run of its files.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stacbatch.engine import _json
from stacbatch.engine._layout import encode
from stacbatch.engine._units import FilesUnit, Unit

if TYPE_CHECKING:
    from stacbatch.sources._detect import SourcePlan


@dataclass
class TreeNode:
    """A Catalog or Collection met by a walk. ``doc`` is the Catalog's JSON (Collections are staged as such)."""

    key: str
    kind: str
    id: str
    parent: str | None
    label: str
    doc: dict[str, Any] | None
    children: list[str] = field(default_factory=list)


@dataclass
class CatalogTree:
    """The nodes of one walk, in walk order (a parent before its children, children in link order)."""

    nodes: dict[str, TreeNode] = field(default_factory=dict)

    def has_catalogs(self) -> bool:
        return any(n.kind == "Catalog" for n in self.nodes.values())


@dataclass(frozen=True, slots=True)
class WalkedFilesUnit(FilesUnit):
    """Item files some tree nodes link: ``groups`` gives, per run of ``paths``, (node key or None, only items
    without a collection, number of paths). The loader records the items of keyed runs as hanging from that node
    (all of them under a plain Catalog; under a Collection only those that do not name a collection)."""

    groups: tuple[tuple[str | None, bool, int], ...] = ()


def _resolve(base_file: str, href: str) -> str | None:
    if "://" in href:
        return None if href.startswith(("http://", "https://")) else href
    if href.startswith("/"):
        return posixpath.normpath(href)
    return posixpath.normpath(posixpath.join(posixpath.dirname(base_file), href))


def _add_node(tree: CatalogTree, where: str, doc: dict[str, Any], parent: str | None, plan: SourcePlan) -> str | None:
    kind = str(doc.get("type"))
    node_id = doc.get("id")
    if not isinstance(node_id, str) or not node_id:
        if kind == "Catalog":  # (a Collection without an id is reported when collections are staged)
            plan.problems.append(
                (where, "id", "catalog has no string id; give it one (its children hang from its parent)")
            )
        return None
    base = encode(node_id) if parent is None else f"{parent}/{encode(node_id)}"
    key, n = base, 1
    while key in tree.nodes:  # two siblings with one id: keep both, apart
        n += 1
        key = f"{base}!{n}"
    tree.nodes[key] = TreeNode(key, kind, node_id, parent, where, doc if kind == "Catalog" else None)
    if parent is not None:
        tree.nodes[parent].children.append(key)
    return key


def catalog_units(fs: Any, path: str, label: str, root: dict[str, Any], plan: SourcePlan) -> Iterator[Unit]:
    tree = CatalogTree()
    plan.catalog_trees.append(tree)
    # (file, document, parent node key, files of its ancestors): ancestors tell a cycle from a second parent
    stack: list[tuple[str, dict[str, Any], str | None, tuple[str, ...]]] = [(path, root, None, ())]
    reached = {path}
    batch: list[str] = []
    groups: list[list[Any]] = []
    while stack:
        where, doc, parent, ancestors = stack.pop()
        key = _add_node(tree, where, doc, parent, plan)
        here = key if key is not None else parent
        is_coll = doc.get("type") == "Collection"
        if is_coll:
            plan.collections.append((where, doc))
        children: list[tuple[str, str]] = []
        for link in doc.get("links") or []:
            if not isinstance(link, dict) or not isinstance(link.get("href"), str):
                continue
            rel = link.get("rel")
            if rel not in ("child", "item"):
                continue
            target = _resolve(where, link["href"])
            if target is None:
                plan.problems.append((where, "", f"link to {link['href']} not followed: remote links are not read"))
                continue
            if rel == "item":
                batch.append(target)
                if groups and groups[-1][0] == here and groups[-1][1] == is_coll:
                    groups[-1][2] += 1
                else:
                    groups.append([here, is_coll, 1])
                if len(batch) >= plan.batch_size:
                    yield WalkedFilesUnit(batch, tuple((g[0], g[1], g[2]) for g in groups))
                    batch, groups = [], []
            elif all(target != c for c, _ in children):
                children.append((target, link["href"]))
        chain = (*ancestors, where)
        for child, href in reversed(children):  # pushed last, popped first: children in link order
            if child in chain:
                plan.problems.append(
                    (where, f"child link {href}", "cycle: the child is an ancestor of this catalog; remove the link")
                )
                continue
            if child in reached:
                plan.problems.append(
                    (where, f"child link {href}", "the child is linked from another catalog too; kept under the first")
                )
                continue
            reached.add(child)
            try:
                with fs.open(child, "rb") as f:
                    sub = _json.loads(f.read())
            except (OSError, ValueError) as err:
                reason = f"cannot read the child ({err}); fix or remove the link"
                plan.problems.append((where, f"child link {href}", reason))
                continue
            if isinstance(sub, dict) and sub.get("type") in ("Catalog", "Collection"):
                stack.append((child, sub, here, chain))
            else:
                plan.problems.append(
                    (where, f"child link {href}", "the child is not a Catalog or Collection; fix or remove the link")
                )
    if batch:
        yield WalkedFilesUnit(batch, tuple((g[0], g[1], g[2]) for g in groups))
