"""Checks where the STAC schemas are silent, each named so that ``--checks`` can choose them.

- ``datetime``: RFC 3339 date-times a parser accepts (``2021-02-30T00:00:00Z`` matches the pattern and is no date)
- ``time-order``: ``start_datetime`` is not after ``end_datetime``
- ``bbox``: south <= north, coordinates in range, and the bbox contains the geometry (a bbox across the
  antimeridian, west > east, contains longitudes from west to 180 and from -180 to east)
- ``geometry``: the geometry is valid (shapely, for a whole batch at once)
- ``asset-href``: every asset has a non-empty ``href``
- ``extension-declared``: fields of an extension are used without its schema URL in ``stac_extensions``, or an
  extension is declared and none of its fields is used (extensions are known by the field prefixes their schemas
  define; an extension without prefixed fields is not judged)
- ``alternate-href``: an asset's ``alternate`` map is not empty and each alternate has an ``href`` (the
  alternate-assets v1.2.0 schema lets both through)
- ``formats``: the schemas' ``format`` keywords (``date-time``, ``uri``, ...); off unless named, as in
  stac-validator (relative link hrefs, which STAC allows, fail ``iri``)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from stacbatch.validate._engine import Finding

CHECKS = (
    "datetime",
    "time-order",
    "bbox",
    "geometry",
    "asset-href",
    "extension-declared",
    "alternate-href",
    "formats",
)
DEFAULT_CHECKS = tuple(c for c in CHECKS if c != "formats")
#: the date-time fields of STAC common metadata
TIME_FIELDS = ("datetime", "start_datetime", "end_datetime", "created", "updated")
_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_PREFIXED = re.compile(r"^([a-z][a-z0-9_\-]*):")
#: unprefixed fields that belong to an extension known by its prefix: alternate-assets' `alternate` (beside
#: `alternate:name`). Plain names in general cannot be told apart (web-map-links defines `href:servers`, and every
#: asset has an `href`), so only these are counted as uses.
OWNED_PLAIN = {"alternate": "alternate"}


def parse_checks(text: str | None) -> tuple[str, ...]:
    """``--checks``: ``all``, ``none``, ``default``, or names (``-name`` to leave one out of the default)."""
    if text is None or text == "default":
        return DEFAULT_CHECKS
    if text == "none":
        return ()
    if text == "all":
        return CHECKS
    chosen = list(DEFAULT_CHECKS) if all(p.startswith("-") for p in text.split(",")) else []
    for part in (p.strip() for p in text.split(",")):
        name = part.lstrip("-+")
        if name not in CHECKS:
            from stacbatch.errors import InputError

            raise InputError(f"--checks: unknown check {name!r}; the checks are {', '.join(CHECKS)}, all, none")
        if part.startswith("-"):
            if name in chosen:
                chosen.remove(name)
        elif name not in chosen:
            chosen.append(name)
    return tuple(chosen)


def rfc3339(value: str) -> datetime | None:
    """The time of an RFC 3339 date-time, or None when it is not one (leap second 60 read as 59)."""
    m = _RFC3339.match(value)
    if m is None:
        return None
    try:  # the common form, parsed in C; lower-case t/z, second 60 and the impossible dates go the long way
        return datetime.fromisoformat(value)
    except ValueError:
        pass
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    zone = m.group(8).upper()
    try:
        off = 0 if zone == "Z" else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 60 + int(zone[4:6]))
        if abs(off) >= 24 * 60:
            return None
        tz = UTC if off == 0 else timezone(timedelta(minutes=off))
        return datetime(y, mo, d, h, mi, min(s, 59), tzinfo=tz)
    except ValueError:
        return None


def _times(obj: dict[str, Any], out: list[Finding], enabled: set[str]) -> None:
    props = obj.get("properties") if obj.get("type") == "Feature" else obj
    if not isinstance(props, dict):
        return
    parsed: dict[str, datetime] = {}
    base = "properties." if obj.get("type") == "Feature" else ""
    for name in TIME_FIELDS:
        value = props.get(name)
        if not isinstance(value, str):
            continue
        t = rfc3339(value)
        if t is None:
            if "datetime" in enabled:
                out.append(
                    Finding(
                        "datetime",
                        base + name,
                        f"{value!r} is not an RFC 3339 date-time (e.g. 2021-06-01T10:00:00Z)",
                    )
                )
        else:
            parsed[name] = t
    ordered = "start_datetime" in parsed and "end_datetime" in parsed
    if "time-order" in enabled and ordered and parsed["start_datetime"] > parsed["end_datetime"]:
        out.append(
            Finding(
                "time-order",
                base + "start_datetime",
                f"start_datetime {props['start_datetime']} is after end_datetime {props['end_datetime']}",
            )
        )


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _bbox(obj: dict[str, Any], bounds: tuple[float, float, float, float] | None, geom: Any, out: list[Finding]) -> None:
    bbox = obj.get("bbox")
    if not isinstance(bbox, list) or len(bbox) not in (4, 6) or not all(_number(v) for v in bbox):
        return  # missing or malformed: the schema's to report
    half = len(bbox) // 2
    west, south, east, north = bbox[0], bbox[1], bbox[half], bbox[half + 1]
    if south > north:
        out.append(
            Finding("bbox", "bbox", f"south {south} is north of north {north}: the order is west, south, east, north")
        )
        return
    if not (-90 <= south <= 90 and -90 <= north <= 90 and -180 <= west <= 180 and -180 <= east <= 180):
        out.append(Finding("bbox", "bbox", f"{bbox} is out of range: longitudes -180..180, latitudes -90..90"))
        return
    if bounds is None:
        return
    eps = 1e-7
    gx0, gy0, gx1, gy1 = bounds
    inside_y = gy0 >= south - eps and gy1 <= north + eps
    if west <= east:
        inside_x = gx0 >= west - eps and gx1 <= east + eps
    else:  # across the antimeridian: every longitude in [west, 180] or [-180, east]
        import shapely

        xs = shapely.get_coordinates(geom)[:, 0].tolist() if geom is not None else []
        inside_x = all(x >= west - eps or x <= east + eps for x in xs)
    if not (inside_x and inside_y):
        out.append(
            Finding(
                "bbox",
                "bbox",
                f"{bbox} does not contain the geometry (its bounds are {[round(b, 9) for b in bounds]})",
            )
        )


def _assets(obj: dict[str, Any], enabled: set[str], out: list[Finding]) -> None:
    assets = obj.get("assets")
    if not isinstance(assets, dict):
        return
    for name, asset in assets.items():
        if not isinstance(asset, dict):
            continue
        if "asset-href" in enabled:
            href = asset.get("href")
            if not isinstance(href, str) or not href.strip():
                out.append(Finding("asset-href", f"assets.{name}.href", "an asset needs a non-empty href"))
        if "alternate-href" in enabled and "alternate" in asset:
            alt = asset["alternate"]
            if not isinstance(alt, dict) or not alt:
                out.append(
                    Finding("alternate-href", f"assets.{name}.alternate", "alternate is an object of named alternates")
                )
                continue
            for key, value in alt.items():
                href = value.get("href") if isinstance(value, dict) else None
                if not isinstance(href, str) or not href.strip():
                    out.append(
                        Finding(
                            "alternate-href",
                            f"assets.{name}.alternate.{key}.href",
                            "an alternate needs a non-empty href (alternate-assets)",
                        )
                    )


#: field names seen, and the prefixed ones with their prefix: the same few hundred names recur in every item, so
#: an item's names are sorted out by set operations (in C) against these
_SEEN: set[str] = set()
_PREFIX_OF: dict[str, str] = {}


def _learn(names: set[str]) -> None:
    if len(_SEEN) > 100_000:  # a catalog with unbounded key names must not grow these without end
        _SEEN.clear()
        _PREFIX_OF.clear()
    for name in names:
        m = _PREFIXED.match(name)
        if m:
            _PREFIX_OF[name] = m.group(1)
        elif name in OWNED_PLAIN:
            _PREFIX_OF[name] = OWNED_PLAIN[name]
        _SEEN.add(name)


def field_prefixes(obj: dict[str, Any]) -> set[str]:
    """The prefixes of the extension fields an object uses (properties, assets, item_assets, summaries, top level)."""
    names: set[Any] = set()  # the names first (set unions run in C), then a lookup for each distinct one

    def take(d: Any) -> None:
        if isinstance(d, dict):
            names.update(d)

    take(obj)
    take(obj.get("properties"))
    take(obj.get("summaries"))
    for group in ("assets", "item_assets"):
        assets = obj.get(group)
        if isinstance(assets, dict):
            for asset in assets.values():
                take(asset)
    new = names - _SEEN
    if new:
        _learn(new)
    return {_PREFIX_OF[n] for n in names & _PREFIX_OF.keys()}


def _declared(
    obj: dict[str, Any],
    urls: list[str],
    prefixes_of: Callable[[str], frozenset[str]],
    known: dict[str, str],
    out: list[Finding],
) -> None:
    used = field_prefixes(obj)
    declared: set[str] = set()
    for url in urls:
        mine = prefixes_of(url)
        declared |= mine
        if mine and not (mine & used):
            out.append(
                Finding(
                    "extension-declared",
                    "stac_extensions",
                    f"{url} is declared but none of its fields ({', '.join(sorted(p + ':*' for p in mine))}) is used",
                )
            )
    for prefix in sorted(used - declared):
        if prefix in known:
            out.append(
                Finding(
                    "extension-declared",
                    "stac_extensions",
                    f"fields {prefix}:* are used without their extension's schema URL (e.g. {known[prefix]})",
                )
            )


def geometry_findings(
    geometries: list[Any], wkb: list[bytes | None] | None = None
) -> list[tuple[Any, Any, str | None]]:
    """Per geometry (a GeoJSON object or None): its bounds, the shapely geometry and why it is invalid (None:
    valid), computed by shapely for the whole list at once. ``wkb``: the same geometries as the stage holds them
    (WKB, read ~3x faster than GeoJSON text); where it has None the GeoJSON is read."""
    import numpy as np
    import shapely

    out: list[tuple[Any, Any, str | None]] = [(None, None, None)] * len(geometries)
    idx = [i for i, g in enumerate(geometries) if isinstance(g, dict)]
    if not idx:
        return out
    geoms = np.empty(len(idx), dtype=object)
    from_text = list(range(len(idx)))
    if wkb is not None:
        binary = [n for n, i in enumerate(idx) if wkb[i] is not None]
        if binary:
            geoms[binary] = shapely.from_wkb(np.array([wkb[idx[n]] for n in binary], dtype=object), on_invalid="ignore")
            chosen = set(binary)
            from_text = [n for n in from_text if n not in chosen]
    if from_text:
        # malformed GeoJSON reads as None (the schema reports it)
        texts = np.array([orjson.dumps(geometries[idx[n]]) for n in from_text], dtype=object)
        geoms[from_text] = shapely.from_geojson(texts, on_invalid="ignore")
    valid = shapely.is_valid(geoms)
    bounds = shapely.bounds(geoms).tolist()
    empty = shapely.is_empty(geoms) | shapely.is_missing(geoms)
    for n, i in enumerate(idx):
        if empty[n]:
            continue
        reason = None if valid[n] else shapely.is_valid_reason(geoms[n])
        out[i] = (tuple(bounds[n]), geoms[n], reason)  # coordinates only when needed (a bbox across 180)
    return out


def run_checks(
    objs: list[Any],
    extensions: list[list[str]],
    enabled: set[str],
    prefixes_of: Callable[[str], frozenset[str]],
    known: dict[str, str],
    wkb: list[bytes | None] | None = None,
) -> list[list[Finding]]:
    """The findings of the enabled checks for each object (objects that are not STAC objects get none here).
    ``wkb``: the objects' geometries as a stage holds them, when they come from one."""
    findings: list[list[Finding]] = [[] for _ in objs]
    geo = None
    if enabled & {"geometry", "bbox"}:
        geo = geometry_findings(
            [o.get("geometry") if isinstance(o, dict) and o.get("type") == "Feature" else None for o in objs], wkb
        )
    for i, obj in enumerate(objs):
        if not isinstance(obj, dict):
            continue
        out = findings[i]
        if enabled & {"datetime", "time-order"}:
            _times(obj, out, enabled)
        if geo is not None and obj.get("type") == "Feature":
            bounds, geom, reason = geo[i]
            if "geometry" in enabled and reason is not None:
                out.append(Finding("geometry", "geometry", f"invalid geometry: {reason}"))
            if "bbox" in enabled:
                _bbox(obj, bounds, geom, out)
        if enabled & {"asset-href", "alternate-href"}:
            _assets(obj, enabled, out)
        if "extension-declared" in enabled:
            _declared(obj, extensions[i], prefixes_of, known, out)
    return findings
