"""Seeded generator of CMR-STAC / Planetary-Computer-like STAC items and their collections.

Six collections shaped like HLS (CMR-STAC), MODIS, Sentinel-2, Landsat, Sentinel-1 and NAIP: polygons of 5-20
vertices, 3-12 assets, extension fields, optional fields that come and go, datetimes with 0-7 fractional digits.
About 4-5 KB of NDJSON per item. Same seed, same bytes.

    python -m bench.generate --items 100000 --out bench/out/items-100k.ndjson
"""

from __future__ import annotations

import argparse
import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

COLLECTIONS: list[dict[str, Any]] = [
    {"id": "HLSL30_2.0", "kind": "hls", "platform": "landsat-8", "bands": 11, "start": 2013, "cmr": True},
    {"id": "HLSS30_2.0", "kind": "hls", "platform": "sentinel-2a", "bands": 13, "start": 2015, "cmr": True},
    {"id": "MOD09GA_061", "kind": "modis", "platform": "terra", "bands": 7, "start": 2000, "cmr": True},
    {"id": "sentinel-2-l2a", "kind": "s2", "platform": "sentinel-2b", "bands": 12, "start": 2017, "cmr": False},
    {"id": "landsat-c2-l2", "kind": "landsat", "platform": "landsat-9", "bands": 9, "start": 2013, "cmr": False},
    {"id": "sentinel-1-grd", "kind": "s1", "platform": "sentinel-1a", "bands": 2, "start": 2014, "cmr": False},
]
EXTENSIONS = {
    "eo": "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "proj": "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
    "raster": "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "sat": "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "view": "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "file": "https://stac-extensions.github.io/file/v2.1.0/schema.json",
    "sar": "https://stac-extensions.github.io/sar/v1.0.0/schema.json",
    "s2": "https://stac-extensions.github.io/sentinel-2/v1.0.0/schema.json",
}


def _polygon(rng: random.Random, cx: float, cy: float, size: float) -> tuple[list[list[float]], list[float]]:
    n = rng.randint(5, 20)
    ring = []
    for k in range(n):
        a = 2 * math.pi * k / n
        r = size * rng.uniform(0.7, 1.0)
        x = min(180.0, max(-180.0, cx + r * math.cos(a)))  # a scene near the antimeridian stops at it
        ring.append([round(x, 6), round(cy + r * math.sin(a) * 0.8, 6)])
    ring.append(ring[0])
    xs = [p[0] for p in ring]
    ys = [p[1] for p in ring]
    return ring, [min(xs), min(ys), max(xs), max(ys)]


#: Fractional-second digits drawn per timestamp. 7 digits (as in some real catalogs) is opt-in: stac-geoparquet
#: refuses them, and the benchmark compares tools on input they all accept.
DIGITS = [0, 3, 6, 6, 6]
DIGITS_WITH_7 = [0, 3, 6, 6, 6, 7]


def _stamp(rng: random.Random, dt: datetime, seven: bool = False) -> str:
    digits = rng.choice(DIGITS_WITH_7 if seven else DIGITS)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if digits == 0:
        return base + "Z"
    frac = f"{dt.microsecond:06d}{rng.randint(0, 9)}"[:digits]
    return f"{base}.{frac}Z"


def make_item(rng: random.Random, coll: dict[str, Any], n: int, seven: bool = False) -> dict[str, Any]:
    start = datetime(coll["start"], 1, 1, tzinfo=UTC)
    dt = start + timedelta(
        seconds=rng.randint(0, int((datetime(2025, 12, 31, tzinfo=UTC) - start).total_seconds())),
        microseconds=rng.randint(0, 999_999),
    )
    lon, lat = rng.uniform(-179, 179), rng.uniform(-75, 75)
    ring, bbox = _polygon(rng, lon, lat, rng.uniform(0.2, 1.2))
    kind = coll["kind"]
    tile = (
        f"T{rng.randint(1, 60):02d}{rng.choice('CDEFGHJKLMNPQRSTUVWX')}{rng.choice('ABCDEFGH')}{rng.choice('ABCDEFGH')}"
    )
    item_id = f"{coll['id'].split('_')[0]}.{tile}.{dt:%Y%jT%H%M%S}.v{n}"
    props: dict[str, Any] = {"datetime": _stamp(rng, dt, seven), "platform": coll["platform"]}
    exts = ["eo", "proj"]
    if kind in ("hls", "modis"):
        props["start_datetime"] = _stamp(rng, dt - timedelta(seconds=rng.randint(1, 30)), seven)
        props["end_datetime"] = _stamp(rng, dt + timedelta(seconds=rng.randint(1, 30)), seven)
    if kind != "s1":
        props["eo:cloud_cover"] = rng.choice([rng.randint(0, 100), round(rng.uniform(0, 100), 2)])
    props["proj:epsg"] = rng.choice([32600 + rng.randint(1, 60), 32700 + rng.randint(1, 60), None])
    props["instruments"] = [rng.choice(["oli", "tirs", "msi", "modis", "c-sar"])]
    if rng.random() < 0.7:
        props["view:sun_elevation"] = round(rng.uniform(-10, 80), 8)
        props["view:sun_azimuth"] = round(rng.uniform(0, 360), 8)
        exts.append("view")
    if rng.random() < 0.5:
        props["sat:orbit_state"] = rng.choice(["ascending", "descending"])
        props["sat:relative_orbit"] = rng.randint(1, 233)
        exts.append("sat")
    if kind == "s1":
        props.update(
            {
                "sar:instrument_mode": "IW",
                "sar:polarizations": ["VV", "VH"],
                "sar:frequency_band": "C",
                "sar:product_type": "GRD",
            }
        )
        exts.append("sar")
    if rng.random() < 0.3:
        props["created"] = _stamp(rng, dt + timedelta(days=rng.randint(1, 30)), seven)
    if rng.random() < 0.2:
        baseline = f"0{rng.randint(2, 5)}.{rng.randint(0, 99):02d}"
        if kind == "s2":  # drawn for every kind all the same, so the other collections' items stay as they were
            props["s2:processing_baseline"] = baseline
            exts.append("s2")
    if rng.random() < 0.1:
        props["title"] = f"{coll['id']} granule {tile} — {dt:%d %B %Y}"
    assets: dict[str, Any] = {}
    host = (
        "https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-protected"
        if coll["cmr"]
        else "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2"
    )
    n_bands = rng.randint(1, min(10, coll["bands"]))
    for b in range(n_bands):
        key = f"B{b + 1:02d}"
        asset: dict[str, Any] = {"href": f"{host}/{coll['id']}/{item_id}/{item_id}.{key}.tif", "roles": ["data"]}
        if not coll["cmr"] or rng.random() < 0.5:
            asset["type"] = "image/tiff; application=geotiff; profile=cloud-optimized"
        if rng.random() < 0.6:
            asset["eo:bands"] = [{"name": key, "center_wavelength": round(rng.uniform(0.4, 2.3), 4)}]
            asset["raster:bands"] = [{"nodata": -9999, "data_type": "int16", "scale": 0.0001, "offset": 0}]
            if "raster" not in exts:
                exts.append("raster")
        if rng.random() < 0.3:
            asset["file:size"] = rng.randint(10**5, 10**9)
            if "file" not in exts:
                exts.append("file")
        assets[key] = asset
        if coll["cmr"] and rng.random() < 0.3:
            assets[f"s3_{key}"] = {
                "href": asset["href"].replace("https://data.lpdaac.earthdatacloud.nasa.gov/", "s3://"),
                "roles": ["data"],
            }
    assets["thumbnail"] = {
        "href": f"{host}/{coll['id']}/{item_id}/{item_id}.jpg",
        "type": "image/jpeg",
        "roles": ["thumbnail"],
        "title": "Browse image",
    }
    assets["metadata"] = {
        "href": f"{host}/{coll['id']}/{item_id}/{item_id}.cmr.xml",
        "type": "application/xml",
        "roles": ["metadata"],
    }
    root = (
        "https://cmr.earthdata.nasa.gov/stac/LPCLOUD"
        if coll["cmr"]
        else "https://planetarycomputer.microsoft.com/api/stac/v1"
    )
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.0.0" if coll["cmr"] and rng.random() < 0.5 else "1.1.0",
        "stac_extensions": [EXTENSIONS[e] for e in exts],
        "id": item_id,
        "collection": coll["id"],
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": bbox,
        "properties": props,
        "assets": assets,
        "links": [
            {"rel": "self", "href": f"{root}/collections/{coll['id']}/items/{item_id}"},
            {"rel": "parent", "href": f"{root}/collections/{coll['id']}"},
            {"rel": "collection", "href": f"{root}/collections/{coll['id']}"},
            {"rel": "root", "href": f"{root}/"},
        ],
    }
    if coll["cmr"] and rng.random() < 0.5:
        item["links"].append({"rel": "via", "href": f"https://cmr.earthdata.nasa.gov/search/concepts/G{n}.json"})
    if "eo:cloud_cover" not in props and not any("eo:bands" in a for a in assets.values()):
        item["stac_extensions"].remove(EXTENSIONS["eo"])  # declared only where its fields are used
    return item


#: the ways ``--invalid`` breaks an item, each named in the item's id so that a reader of a report sees it was meant
BREAKAGES = ("no-datetime", "bbox-order", "empty-href", "cloud-cover-140", "end-before-start")


def break_item(item: dict[str, Any], how: str) -> dict[str, Any]:
    """A copy of ``item`` made invalid in one named way (a schema rule, or one of stacbatch's named checks)."""
    item = orjson.loads(orjson.dumps(item))
    item["id"] = f"INVALID-{how}.{item['id']}"
    props = item["properties"]
    if how == "no-datetime":  # the core schema: datetime null needs start_datetime and end_datetime
        props["datetime"] = None
        props.pop("start_datetime", None)
        props.pop("end_datetime", None)
    elif how == "bbox-order":  # the bbox check: west > east
        b = item["bbox"]
        item["bbox"] = [b[2], b[1], b[0], b[3]]
    elif how == "empty-href":  # the asset-href check
        item["assets"]["thumbnail"]["href"] = ""
    elif how == "cloud-cover-140":  # the eo schema: 0 <= eo:cloud_cover <= 100
        props["eo:cloud_cover"] = 140
        if EXTENSIONS["eo"] not in item["stac_extensions"]:
            item["stac_extensions"].insert(0, EXTENSIONS["eo"])
    elif how == "end-before-start":  # the datetime check: start_datetime <= end_datetime
        props["start_datetime"], props["end_datetime"] = "2020-06-02T00:00:00Z", "2020-06-01T00:00:00Z"
    return item


def make_collection(coll: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": coll["id"],
        "title": f"{coll['id']} (synthetic)",
        "description": f"Synthetic {coll['kind'].upper()} granules made by stacbatch's seeded generator.",
        "license": "CC0-1.0" if coll["cmr"] else "proprietary",
        "providers": [{"name": "stacbatch bench", "roles": ["producer"]}],
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[f"{coll['start']}-01-01T00:00:00Z", None]]},
        },
        "links": [],
    }


def generate(count: int, seed: int = 42, seven: bool = False, invalid: int = 0) -> Iterator[dict[str, Any]]:
    """``count`` valid items; with ``invalid``, that many of them (spread evenly) replaced by broken copies."""
    rng = random.Random(seed)
    broken = {(k + 1) * count // (invalid + 1): BREAKAGES[k % len(BREAKAGES)] for k in range(invalid)}
    for n in range(count):
        item = make_item(rng, COLLECTIONS[rng.randrange(len(COLLECTIONS))], n, seven)
        yield break_item(item, broken[n]) if n in broken else item


def write_ndjson(path: Path, count: int, seed: int = 42, seven: bool = False, invalid: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "wb") as f:
        batch: list[bytes] = []
        for item in generate(count, seed, seven, invalid):
            batch.append(orjson.dumps(item))
            if len(batch) >= 10_000:
                f.write(b"\n".join(batch) + b"\n")
                batch = []
        if batch:
            f.write(b"\n".join(batch) + b"\n")
    tmp.replace(path)
    return path


def write_collections(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for coll in COLLECTIONS:
        p = folder / f"{coll['id']}.json"
        p.write_bytes(orjson.dumps(make_collection(coll), option=orjson.OPT_INDENT_2))
        out.append(p)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--collections", type=Path, help="also write collection JSON files into this folder")
    ap.add_argument("--seven-digit-fractions", action="store_true", help="allow 7 fractional-second digits")
    ap.add_argument("--invalid", type=int, default=0, help="replace this many items by broken copies (INVALID-* ids)")
    args = ap.parse_args()
    write_ndjson(args.out, args.items, args.seed, args.seven_digit_fractions, args.invalid)
    if args.collections:
        write_collections(args.collections)


if __name__ == "__main__":
    main()
