"""Throughput by splitting, not by guessing: one query's pages come one after another, so a collection's time
range is cut into windows fetched concurrently.

Windows are closed intervals that touch at their boundaries (an item exactly on a boundary comes twice and the
load keeps one), and the first and last are open-ended (``..``), so every item with a datetime (or a
start/end range) falls in some window even when the collection's advertised extent is wrong.
"""

from __future__ import annotations

import datetime as _dt
import itertools
from typing import Any

UTC = _dt.UTC


def parse_instant(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str) or value in ("", ".."):
        return None
    try:
        parsed = _dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _fmt(value: _dt.datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _extent(collection: dict[str, Any]) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    spans = ((collection.get("extent") or {}).get("temporal") or {}).get("interval") or [[None, None]]
    first = spans[0] if isinstance(spans[0], list) and len(spans[0]) == 2 else [None, None]
    return parse_instant(first[0]), parse_instant(first[1]) or _dt.datetime.now(UTC)


def _cut(window: str | None, collection: dict[str, Any], count: int, within_extent: bool) -> list[str]:
    """``window`` (or everything) cut into ``count`` touching windows of equal length, the outer edges kept as
    given (open ends stay open). The length to cut is the window's, its open ends measured by the collection's
    extent (``within_extent``: the part of the window inside the extent). ``[]`` when it cannot be cut: a single
    instant, no bounds, or under two seconds."""
    if window and "/" not in window:
        return []
    lo_t, hi_t = window.split("/", 1) if window else ("..", "..")
    ext_lo, ext_hi = _extent(collection)
    lo, hi = parse_instant(lo_t), parse_instant(hi_t)
    if within_extent:
        lo = max(filter(None, [lo, ext_lo]), default=None)
        hi = min(filter(None, [hi, ext_hi]), default=None)
    else:
        lo, hi = lo or ext_lo, hi or ext_hi
    if count < 2 or lo is None or hi is None or (hi - lo).total_seconds() < 2:
        return []
    step = (hi - lo) / count
    edges = [lo_t or "..", *(_fmt(lo + step * i) for i in range(1, count)), hi_t or ".."]
    return [f"{a}/{b}" for a, b in itertools.pairwise(edges)]


def time_windows(collection: dict[str, Any], user: str | None, count: int) -> list[str | None]:
    """``count`` datetime filters covering the user's interval (or everything), split evenly over the part of it
    the collection's temporal extent says holds items. ``[user]`` when there is nothing to split on."""
    return list(_cut(user, collection, count, within_extent=True)) or [user]


def split_window(window: str | None, collection: dict[str, Any], count: int) -> list[str]:
    """``window`` cut into ``count`` equal parts (open ends measured by the collection's extent); ``[]`` when it
    cannot be cut."""
    return _cut(window, collection, count, within_extent=False)
