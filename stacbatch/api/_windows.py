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


def time_windows(collection: dict[str, Any], user: str | None, count: int) -> list[str | None]:
    """``count`` datetime filters covering the user's interval (or everything), split evenly over the part of it
    the collection's temporal extent says holds items. ``[None]`` when there is nothing to split on."""
    lo_u, hi_u = ([*user.split("/"), ""])[:2] if user else ("..", "..")
    if user and "/" not in user:
        return [user]  # a single instant
    ext_lo, ext_hi = _extent(collection)
    lo = max(filter(None, [parse_instant(lo_u), ext_lo]), default=None)
    hi = min(filter(None, [parse_instant(hi_u), ext_hi]), default=None)
    if count <= 1 or lo is None or hi is None or hi <= lo:
        return [user]
    step = (hi - lo) / count
    cuts = [lo + step * i for i in range(1, count)]
    edges = [lo_u or "..", *(_fmt(c) for c in cuts), hi_u or ".."]
    return [f"{a}/{b}" for a, b in itertools.pairwise(edges)]


def _extent(collection: dict[str, Any]) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    spans = ((collection.get("extent") or {}).get("temporal") or {}).get("interval") or [[None, None]]
    first = spans[0] if isinstance(spans[0], list) and len(spans[0]) == 2 else [None, None]
    return parse_instant(first[0]), parse_instant(first[1]) or _dt.datetime.now(UTC)


def split_window(window: str | None, collection: dict[str, Any], count: int) -> list[str]:
    """``window`` cut into ``count`` touching windows of equal length, open ends kept open (their length taken from
    the collection's extent). ``[]`` when it cannot be cut: a single instant, no bounds, or under two seconds."""
    if window and "/" not in window:
        return []
    lo_t, hi_t = window.split("/", 1) if window else ("..", "..")
    ext_lo, ext_hi = _extent(collection)
    lo = parse_instant(lo_t) or ext_lo
    hi = parse_instant(hi_t) or ext_hi
    if count < 2 or lo is None or hi is None or (hi - lo).total_seconds() < 2:
        return []
    step = (hi - lo) / count
    edges = [lo_t or "..", *(_fmt(lo + step * i) for i in range(1, count)), hi_t or ".."]
    return [f"{a}/{b}" for a, b in itertools.pairwise(edges)]
