"""Mapping speed: a CSV inventory staged through a realistic mapping (geometry from WKT with a lon/lat fallback,
3 dates in 3 notations, 20 properties, 3 assets, one lookup). No other tool maps tables to STAC in batches, so
the figure to compare is the issue's target (100,000 rows/s, peak memory under 2 GB).

    python -m bench.mapping --rows 1000000
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from bench._measure import Measurement, discard, empty_trash, run

MAPPING = """
collection: inventory
id: "{platform}_{tile}_{scene}"
datetime: {column: acquired, format: "%Y-%m-%d %H:%M:%S"}
start_datetime: {column: start_epoch, epoch: s}
end_datetime: {column: end_day, format: "%d/%m/%Y", timezone: Europe/Paris}
geometry:
  - {wkt: footprint}
  - {lonlat: [lon, lat]}
lookups:
  sensors: {path: sensors.csv, key: code}
properties:
  platform: {column: platform}
  constellation: {case: [{when: "platform LIKE 'landsat%'", then: landsat}], else: sentinel-2}
  instruments: [{column: sensor}]
  instrument_name: {lookup: {table: sensors, match: sensor, value: name}}
  eo:cloud_cover: {column: cloud, cast: float, default: 0}
  gsd: {column: gsd, cast: float}
  view:sun_azimuth: {column: sun_az, cast: float}
  view:sun_elevation: {column: sun_el, cast: float}
  proj:code: {template: "EPSG:{epsg}"}
  mgrs:utm_zone: {column: zone, cast: int}
  mgrs:latitude_band: {column: band}
  mgrs:grid_square: {column: square}
  processing:level: {column: level}
  processing:software: {const: {stacbatch-bench: "1.0"}}
  quality: {column: quality, default: unknown}
  orbit: {column: orbit, cast: int}
  relative_orbit: {column: rel_orbit, cast: int}
  title: {columns: [platform, tile, scene], join: " "}
  keywords: {column: tags, split: ";"}
  first_tag: {column: tags, split: ";", index: 0}
assets:
  data: {href: "s3://bucket/{tile}/{scene}.tif", type: "image/tiff; application=geotiff", roles: [data]}
  metadata: {href: "s3://bucket/{tile}/{scene}.xml", type: application/xml, roles: [metadata]}
  thumbnail: {href: "https://example.com/{scene}.png", type: image/png, roles: [thumbnail]}
"""
SENSORS = "code,name\nOLI,Operational Land Imager\nMSI,MultiSpectral Instrument\nTIRS,Thermal Infrared Sensor\n"


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    platforms = ["landsat-8", "landsat-9", "sentinel-2a", "sentinel-2b"]
    with open(path, "w") as f:
        f.write(
            "scene,platform,tile,acquired,start_epoch,end_day,footprint,lon,lat,sensor,cloud,gsd,sun_az,sun_el,"
            "epsg,zone,band,square,level,quality,orbit,rel_orbit,tags\n"
        )
        for i in range(rows):
            lon, lat = rng.uniform(-179, 178), rng.uniform(-80, 79)
            t = 1_500_000_000 + i * 60
            day = 1 + i % 28
            wkt = (
                f'"POLYGON(({lon:.5f} {lat:.5f},{lon + 1:.5f} {lat:.5f},{lon + 1:.5f} {lat + 1:.5f},'
                f'{lon:.5f} {lat + 1:.5f},{lon:.5f} {lat:.5f}))"'
                if i % 10
                else ""
            )
            f.write(
                f"S{i:07d},{platforms[i % 4]},T{i % 60:02d}ABC,2021-06-{day:02d} 10:{i % 60:02d}:{i % 59:02d},{t},"
                f"{day:02d}/07/2021,{wkt},{lon:.5f},{lat:.5f},{['OLI', 'MSI', 'TIRS'][i % 3]},"
                f"{'' if i % 7 == 0 else round(rng.uniform(0, 100), 2)},{[10, 30][i % 2]},{rng.uniform(0, 360):.3f},"
                f"{rng.uniform(0, 90):.3f},{32600 + i % 60},{1 + i % 60},{'CDEFGHJKLMNPQRSTUVWX'[i % 20]},AB,L2,"
                f"{'' if i % 5 else 'good'},{i},{i % 233},a;b;c{i % 9}\n"
            )


def bench_mapping(rows: int, work: Path, sb: list[str]) -> Measurement:
    work.mkdir(parents=True, exist_ok=True)
    csv = work / f"inventory-{rows}.csv"
    if not csv.exists():
        write_csv(csv, rows)
    (work / "sensors.csv").write_text(SENSORS)
    (work / "inventory.yaml").write_text(MAPPING)
    stage = work / "mapping-stage"
    discard(stage)
    return run([*sb, "load", str(csv), "--mapping", str(work / "inventory.yaml"), "--stage", str(stage)])


def main() -> None:
    from bench.run import OUT, Row, _tool, report

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    args = ap.parse_args()
    m = bench_mapping(args.rows, OUT / "work-mapping", [_tool("stacbatch"), "-q"])
    print(f"  rc={m.returncode} {m.stderr.strip()[-300:]}", file=sys.stderr)
    print(report([Row("CSV + mapping -> stage", "stacbatch", args.rows, m)]))
    empty_trash()


if __name__ == "__main__":
    main()
