"""Static catalogs: walk ``child`` and ``item`` links from a catalog.json / collection.json."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from stacbatch import _json
from stacbatch.sources._units import FilesUnit, Unit

if TYPE_CHECKING:
    from stacbatch.sources._detect import SourcePlan


def _resolve(base_file: str, href: str) -> str | None:
    if "://" in href:
        return None if href.startswith(("http://", "https://")) else href
    if href.startswith("/"):
        return posixpath.normpath(href)
    return posixpath.normpath(posixpath.join(posixpath.dirname(base_file), href))


def catalog_units(fs: Any, path: str, label: str, root: dict[str, Any], plan: SourcePlan) -> Iterator[Unit]:
    seen: set[str] = set()
    stack: list[tuple[str, dict[str, Any]]] = [(path, root)]
    batch: list[str] = []
    while stack:
        where, doc = stack.pop()
        if where in seen:
            continue
        seen.add(where)
        if doc.get("type") == "Collection":
            plan.collections.append((where, doc))
        children: list[str] = []
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
                if len(batch) >= plan.batch_size:
                    yield FilesUnit(batch)
                    batch = []
            else:
                children.append(target)
        for child in reversed(children):
            try:
                with fs.open(child, "rb") as f:
                    sub = _json.loads(f.read())
            except (OSError, ValueError) as err:
                plan.problems.append((child, "", f"cannot read child catalog: {err}"))
                continue
            if isinstance(sub, dict) and sub.get("type") in ("Catalog", "Collection"):
                stack.append((child, sub))
            else:
                plan.problems.append((child, "", "child link does not point to a Catalog or Collection"))
    if batch:
        yield FilesUnit(batch)
