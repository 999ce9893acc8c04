"""Huge JSON documents (FeatureCollections, arrays) streamed item by item with ijson, in bounded memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import ijson

from stacbatch.engine._units import DictsUnit, Unit

if TYPE_CHECKING:
    from stacbatch.sources._detect import SourcePlan


def _prefix(fs: Any, path: str) -> str:
    with fs.open(path, "rb") as f:
        head = f.read(4096).lstrip()
    return "item" if head.startswith(b"[") else "features.item"


def stream_document_units(fs: Any, path: str, label: str, plan: SourcePlan) -> Iterator[Unit]:
    prefix = _prefix(fs, path)
    done = 0
    for backend in ("yajl2_c", "python"):
        try:
            impl = ijson.get_backend(backend)
        except ImportError:
            continue
        try:
            with fs.open(path, "rb") as f:
                items: list[Any] = []
                labels: list[str] = []
                for n, obj in enumerate(impl.items(f, prefix, use_float=True)):
                    if n < done:  # resuming with the slower backend after an overflow
                        continue
                    items.append(obj)
                    labels.append(f"{label}#{prefix.replace('.item', '')}[{n}]")
                    if len(items) >= plan.batch_size:
                        yield DictsUnit(label, labels, items)
                        done = n + 1
                        items, labels = [], []
                if items:
                    yield DictsUnit(label, labels, items)
            return
        except ijson.JSONError as err:
            if "overflow" in str(err) and backend == "yajl2_c":
                continue
            plan.problems.append((label, f"item {done}", f"not valid JSON ({err})"))
            return
