"""Declarative mappings: tabular records to valid STAC 1.1.0 items, compiled to DuckDB SQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from helpers import cli, read_ndjson
from stac_schemas import validate_item

import stacbatch
from stacbatch.mapping import read_mapping
from stacbatch.workflow import load

CSV = """scene,platform,tile,acquired,start_epoch,end_date,lon,lat,cloud,bands,sensor,wkt
S1,landsat-8,T31UFQ,2021-06-01 10:20:30,1622541600,2021-06-02,4.35,50.85,12.5,B1|B2,OLI,"POLYGON((4 50,5 50,5 51,4 50))"
S2,sentinel-2a,T32ABC,2021-06-02 11:00:00,1622628000,2021-06-03,5.1,51.2,,B3|B4,MSI,"POLYGON ((5 51, 6 51, 6 52, 5 51))"
S3,landsat-9,T33XYZ,not a date,1622714400,2021-06-04,6.0,52.0,3,B5,OLI,"POINT (6 52)"
S4,landsat-9,T33XYZ,2021-06-04 00:00:00,1622800800,2021-06-05,7.0,53.0,abc,B6,TIRS,garbage
"""
SENSORS = "code,name\nOLI,Operational Land Imager\nMSI,MultiSpectral Instrument\n"
EO = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
MAPPING = f"""
collection: inventory
id: "{{platform}}_{{tile}}_{{scene}}"
datetime: {{column: acquired, format: "%Y-%m-%d %H:%M:%S", timezone: Europe/Brussels}}
start_datetime: {{column: start_epoch, epoch: s}}
end_datetime: {{column: end_date, cast: datetime}}
geometry: {{wkt: wkt}}
stac_extensions: ["{EO}"]
lookups:
  sensors: {{path: sensors.csv, key: code}}
properties:
  platform: {{column: platform}}
  eo:cloud_cover: {{column: cloud, cast: float, default: 0}}
  first_band: {{column: bands, split: "|", index: 0}}
  label: {{columns: [platform, tile], join: " / "}}
  origin: "{{lon}},{{lat}}"
  instruments: [{{column: sensor, cast: string}}]
  instrument_name: {{lookup: {{table: sensors, match: sensor, value: name}}}}
  constellation: {{case: [{{when: "platform LIKE 'landsat%'", then: landsat}}], else: sentinel-2}}
  gsd: {{sql: "CASE WHEN platform LIKE 'landsat%' THEN 30 ELSE 10 END"}}
  provider_note: {{const: null}}
  eo:bands: [{{name: {{column: sensor}}, common_name: red}}]
assets:
  data:
    href: "s3://bucket/{{scene}}.tif"
    type: image/tiff; application=geotiff
    roles: [data]
    eo:bands: [{{name: b1}}]
  metadata: {{href: "https://example.com/{{scene}}.xml", roles: [metadata], title: Metadata}}
  thumbnail: {{href: "https://example.com/{{scene}}.png", type: image/png, roles: [thumbnail]}}
links:
  - {{rel: via, href: "https://example.com/scenes/{{scene}}"}}
"""


def validate_staged(item: dict[str, Any]) -> None:
    """A staged item as STAC: with a collection, STAC 1.1 wants a collection link, which the tree emit writes (the
    stage and NDJSON have no layout to point into), so it is added here as the tree would."""
    link = {"rel": "collection", "href": "../collection.json", "type": "application/json"}
    validate_item({**item, "links": [*item["links"], link]} if item.get("collection") else item)


def staged(stage: str) -> dict[str, Any]:
    rows = stacbatch.open_stage(stage).sql("SELECT id, item FROM items").fetchall()
    return {i: orjson.loads(j) for i, j in rows}


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    (tmp_path / "inv.csv").write_text(CSV)
    (tmp_path / "sensors.csv").write_text(SENSORS)
    (tmp_path / "map.yaml").write_text(MAPPING)
    return tmp_path


def test_csv_makes_valid_items_and_reports_failed_records(inventory: Path) -> None:
    stage = str(inventory / "stage")
    res = load(stage, [str(inventory / "inv.csv")], mapping=read_mapping(str(inventory / "map.yaml")))
    assert (res.read, res.staged, res.failed) == (4, 2, 2)
    items = staged(stage)
    assert sorted(items) == ["landsat-8_T31UFQ_S1", "sentinel-2a_T32ABC_S2"]
    one = items["landsat-8_T31UFQ_S1"]
    p = one["properties"]
    assert p["datetime"] == "2021-06-01T08:20:30Z"  # Brussels summer time to UTC
    assert p["start_datetime"] == "2021-06-01T10:00:00Z" and p["end_datetime"] == "2021-06-02T00:00:00Z"
    assert p["eo:cloud_cover"] == 12.5 and p["first_band"] == "B1" and p["label"] == "landsat-8 / T31UFQ"
    assert p["origin"] == "4.35,50.85" and p["instruments"] == ["OLI"] and p["gsd"] == 30
    assert p["instrument_name"] == "Operational Land Imager" and p["constellation"] == "landsat"
    assert "provider_note" not in p  # null values are left out, not written as null
    assert p["eo:bands"] == [{"name": "OLI", "common_name": "red"}]
    assert one["bbox"] == [4.0, 50.0, 5.0, 51.0] and one["geometry"]["type"] == "Polygon"
    assert one["collection"] == "inventory" and one["stac_extensions"] == [EO]
    assert sorted(one["assets"]) == ["data", "metadata", "thumbnail"]
    assert one["assets"]["data"] == {
        "href": "s3://bucket/S1.tif",
        "type": "image/tiff; application=geotiff",
        "roles": ["data"],
        "eo:bands": [{"name": "b1"}],
    }
    assert one["links"] == [{"rel": "via", "href": "https://example.com/scenes/S1"}]  # the mapping's own only
    two = items["sentinel-2a_T32ABC_S2"]["properties"]
    assert two["eo:cloud_cover"] == 0 and two["constellation"] == "sentinel-2" and two["gsd"] == 10  # defaulted
    # the records that could not become items: their number and why
    failures = read_ndjson(Path(stage) / "runs" / res.run_id / "failures.ndjson")
    assert [(f["row"], f["reason"].split(":")[0]) for f in failures] == [(3, "datetime"), (4, "geometry")]
    fields = res.mapping[str(inventory / "inv.csv")].fields
    cc = fields["properties.eo:cloud_cover"]
    assert (cc.set, cc.defaulted, cc.failed, cc.sample) == (2, 2, 1, "abc")
    summary = orjson.loads((Path(stage) / "runs" / res.run_id / "summary.json").read_bytes())
    assert summary["mapping"][str(inventory / "inv.csv")]["fields"]["datetime"]["failed"] == 1


RECORDS: list[dict[str, Any]] = [
    {"id": "r1", "t": "2020-01-01T00:00:00Z", "w": 1.0, "s": 2.0, "e": 3.0, "n": 4.0, "meta": {"sensor": "A"}},
    {
        "id": "r2",
        "t": "2020-01-02T12:30:00.5+02:00",
        "w": -10.0,
        "s": -5.0,
        "e": -9.0,
        "n": -4.0,
        "meta": {"sensor": None},
    },
]
SIMPLE = """
collection: recs
id: {column: id}
datetime: {column: t}
geometry: {bbox: [w, s, e, n]}
properties:
  sensor: {column: meta.sensor, default: unknown}
"""


@pytest.mark.parametrize("fmt", ["json-records", "json-array", "ndjson", "parquet"])
def test_json_ndjson_and_parquet_sources(tmp_path: Path, fmt: str) -> None:
    mapping = SIMPLE
    if fmt == "json-records":
        src = tmp_path / "recs.json"
        src.write_bytes(orjson.dumps({"data": RECORDS, "next": None}))
        mapping += "source: {records: data}\n"
    elif fmt == "json-array":
        src = tmp_path / "recs.json"
        src.write_bytes(orjson.dumps(RECORDS))
    elif fmt == "ndjson":
        src = tmp_path / "recs.ndjson"
        src.write_bytes(b"\n".join(orjson.dumps(r) for r in RECORDS) + b"\n")
    else:
        src = tmp_path / "recs.parquet"
        pq.write_table(pa.Table.from_pylist(RECORDS), src)
    (tmp_path / "m.yaml").write_text(mapping)
    stage = str(tmp_path / "stage")
    res = load(stage, [str(src)], mapping=read_mapping(str(tmp_path / "m.yaml")))
    assert res.failed == 0 and res.staged == 2
    items = staged(stage)
    for item in items.values():
        validate_staged(item)
    assert items["r1"]["bbox"] == [1.0, 2.0, 3.0, 4.0] and items["r1"]["properties"]["sensor"] == "A"
    assert items["r2"]["properties"] == {"datetime": "2020-01-02T10:30:00.5Z", "sensor": "unknown"}
    assert items["r2"]["geometry"]["coordinates"][0][0] == [-10.0, -5.0]


def test_geoparquet_geometry_column_and_lonlat(tmp_path: Path) -> None:
    geoms = [shapely.Polygon([(0, 0), (2, 0), (2, 1), (0, 0)]), shapely.Point(10.5, -3.25)]
    table = pa.table(
        {
            "name": ["a", "b"],
            "day": ["2022-03-01", "2022-03-02"],
            "geometry": shapely.to_wkb(geoms),
            "x": [1.5, 2.5],
            "y": [3.5, 4.5],
        }
    )
    meta = {
        b"geo": orjson.dumps(
            {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {"encoding": "WKB"}}}
        )
    }
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "g.parquet")
    for n, geometry in enumerate(["{column: geometry}", "{lonlat: [x, y]}"]):
        (tmp_path / "m.yaml").write_text(
            "collection: g\nid: {column: name}\ndatetime: {column: day, format: '%Y-%m-%d'}\n"
            f"geometry: {geometry}\n"
        )
        stage = str(tmp_path / f"stage{n}")
        res = load(stage, [str(tmp_path / "g.parquet")], mapping=read_mapping(str(tmp_path / "m.yaml")))
        assert res.failed == 0
        items = staged(stage)
        for item in items.values():
            validate_staged(item)
        assert items["a"]["properties"]["datetime"] == "2022-03-01T00:00:00Z"
        if n == 0:
            assert items["a"]["bbox"] == [0.0, 0.0, 2.0, 1.0] and items["b"]["geometry"]["type"] == "Point"
        else:
            assert items["b"]["geometry"] == {"type": "Point", "coordinates": [2.5, 4.5]}
            assert items["b"]["bbox"] == [2.5, 4.5, 2.5, 4.5]
        # the stage's WKB column holds each item's geometry (ISO WKB of the same doubles)
        wkbs = stacbatch.open_stage(stage).sql("SELECT id, geometry FROM items").fetchall()
        for rid, wkb in wkbs:
            expected = shapely.to_wkb(shapely.from_geojson(orjson.dumps(items[rid]["geometry"])), flavor="iso")
            assert bytes(wkb) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "id: {column: scene}\ndatetime: {column: acquired}\ngeometry: {wkt: wkt}\ncolour: red\n",
            ":4: colour: unknown key",
        ),
        ("id: {column: nope}\ndatetime: {column: acquired}\ngeometry: {wkt: wkt}\n", ":1: id.column: no column 'nope'"),
        (
            "id: '{scene'\ndatetime: {column: acquired}\ngeometry: {wkt: wkt}\n",
            ":1: id: malformed template",
        ),
        (
            "id: {column: scene}\ndatetime: {column: acquired}\ngeometry: {wkt: wkt}\nproperties:\n"
            "  x: {sql: 'no_such_function(scene)'}\n",
            ":5: properties.x: ",
        ),
        (
            "id: {column: scene}\ndatetime: {column: acquired}\ngeometry: {wkt: wkt}\nproperties:\n"
            "  x: {lookup: {table: missing, match: scene, value: v}}\n",
            ":5: properties.x.lookup.table: no lookup table",
        ),
        ("id: {column: scene}\ngeometry: {wkt: wkt}\n", "give datetime, or start_datetime and end_datetime"),
        ("id: {column: scene\n", "not valid YAML/JSON"),
        ("id: {column: scene, cast: decimal}\ndatetime: {column: acquired}\ngeometry: {wkt: wkt}\n", ":1: id"),
    ],
    ids=["unknown-key", "missing-column", "template", "unknown-function", "lookup", "no-datetime", "yaml", "cast"],
)
def test_bad_mappings_are_one_line_with_file_line_and_key(inventory: Path, text: str, expected: str) -> None:
    (inventory / "bad.yaml").write_text(text)
    p = cli("load", "inv.csv", "--mapping", "bad.yaml", "--stage", "stage", cwd=inventory)
    assert p.returncode == 4, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stacbatch: error: bad.yaml") and expected in lines[0], lines
    assert not (inventory / "stage").exists()  # rejected before any work


def test_check_and_explain(inventory: Path) -> None:
    p = cli("mapping", "check", "map.yaml", cwd=inventory)
    assert p.returncode == 0 and "valid" in p.stderr
    p = cli("mapping", "check", "map.yaml", "inv.csv", "--explain", cwd=inventory)
    assert p.returncode == 0 and p.stdout.count("SELECT") >= 2 and "read_csv" in p.stdout
    p = cli("load", "inv.csv", "--mapping", "map.yaml", "--explain", "--stage", "stage", cwd=inventory)
    assert p.returncode == 0 and "AS item" in p.stdout and not (inventory / "stage").exists()
    p = cli("load", "inv.csv", "--mapping", "map.yaml", "--stage", "stage", cwd=inventory)
    assert p.returncode == 3  # partial: two records failed
    assert "inv.csv record 3: datetime" in p.stderr and "properties.eo:cloud_cover: 2 set, 2 defaulted" in p.stderr


def test_mapping_schema_is_valid_json_schema() -> None:
    import jsonschema

    from stacbatch.mapping import mapping_schema

    schema = mapping_schema()  # read through importlib.resources: it ships inside the package
    jsonschema.Draft202012Validator.check_schema(schema)
    assert set(schema["required"]) == {"id", "geometry"} and "value" in schema["$defs"]


def test_astral_api_through_configs_astral_yaml(tmp_path: Path) -> None:
    """The Astral example rows, served like the real list endpoint (relative next URLs, limit capped at 100, 429s,
    a bearer token from the environment), become valid STAC items through the shipped mapping."""
    from astral_server import AstralServer, rows_from_examples
    from conftest import ROOT, shared_path

    rows = rows_from_examples(shared_path("corpus", "astral"), 230)
    srv = AstralServer(rows, token="s3cret-token", fault_every=4).start()
    try:
        stage = str(tmp_path / "stage")
        env = {**os.environ, "ASTRAL_API_KEY": "s3cret-token"}
        p = subprocess.run(
            [
                *(sys.executable, "-m", "stacbatch", "load", srv.url),
                *("--mapping", str(ROOT / "configs" / "astral.yaml"), "--stage", stage),
                *("-H", "Authorization: Bearer ${ASTRAL_API_KEY}", "--max-retries", "3"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        no_location = [r for r in rows if r["location"] is None]
        assert p.returncode == 3, p.stderr  # partial: proofs without any location cannot be items
        assert "s3cret-token" not in p.stderr + p.stdout
        items = staged(stage)
        assert len(items) == len(rows) - len(no_location) and no_location
        for item in items.values():
            validate_staged(item)
        by_uid = {r["uid"]: r for r in rows}
        for uid, item in items.items():
            row = by_uid[uid]
            assert item["properties"]["datetime"] == row["event_timestamp"].replace("+00:00", "Z")
            assert item["geometry"]["coordinates"] == [row["longitude"], row["latitude"]]
            assert item["properties"]["astral:chain"] == "sepolia"
            assert item["properties"]["astral:revoked"] is row["revoked"]
        assert any(r["location_type"] == "lat-lng" for r in rows if r["uid"] in items)  # the lon/lat fallback
        offsets = [q for q in srv.requests if "offset=" in q]
        assert "limit=100" in offsets[0] and any("offset=200" in q for q in offsets)  # the relative next links
        before = len(srv.requests)
        p = subprocess.run(
            [
                *(sys.executable, "-m", "stacbatch", "load", srv.url, "--explain", "--stage", stage + "-x"),
                *("--mapping", str(ROOT / "configs" / "astral.yaml"), "-H", "Authorization: Bearer ${ASTRAL_API_KEY}"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert p.returncode == 0 and "AS item" in p.stdout, p.stderr
        # explaining needs the columns, not the records: the first page (and a retry after an injected 429)
        assert len(srv.requests) - before <= 2 and not os.path.exists(stage + "-x")
    finally:
        srv.stop()


def test_http_paging_by_offset_link_header_and_cursor(tmp_path: Path) -> None:
    import asyncio
    import socket
    import threading

    from aiohttp import web

    records = [{"k": f"r{i}", "t": f"2021-01-{1 + i % 28:02d}", "x": i % 90, "y": -(i % 45)} for i in range(57)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def by_offset(request: web.Request) -> web.Response:
        off, lim = int(request.query["start"]), int(request.query["size"])
        return web.json_response({"results": records[off : off + lim]})

    async def by_link(request: web.Request) -> web.Response:
        page = int(request.query.get("page", "0"))
        headers = {"Link": f'</link?page={page + 1}>; rel="next"'} if (page + 1) * 10 < len(records) else {}
        return web.json_response(records[page * 10 : page * 10 + 10], headers=headers)

    async def by_cursor(request: web.Request) -> web.Response:
        at = int(request.query.get("after", "0"))
        page = records[at : at + 20]
        return web.json_response({"items": page, "meta": {"cursor": str(at + 20) if at + 20 < len(records) else None}})

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/offset", by_offset)
    app.router.add_get("/link", by_link)
    app.router.add_get("/cursor", by_cursor)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        base = "id: {column: k}\ndatetime: {column: t}\ngeometry: {lonlat: [x, y]}\n"
        for name, source in (
            ("offset", "source: {records: results, http: {offset: {param: start, limit_param: size, limit: 25}}}\n"),
            ("link", "source: {http: {link: true}}\n"),
            # no records path: the "items" envelope is found (and the cursor object is not taken for a record)
            ("cursor", "source: {http: {cursor: {path: meta.cursor, param: after}}}\n"),
        ):
            (tmp_path / f"{name}.yaml").write_text(base + source)
            stage = str(tmp_path / name)
            res = load(stage, [f"http://127.0.0.1:{port}/{name}"], mapping=read_mapping(str(tmp_path / f"{name}.yaml")))
            assert res.failed == 0 and sorted(staged(stage)) == sorted(r["k"] for r in records), name
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(runner.cleanup())
        loop.close()


def test_scaffold_creates_valid_collections_and_a_catalog(inventory: Path) -> None:
    from stac_schemas import validate

    p = cli(
        *("scaffold", "inv.csv", "--mapping", "map.yaml", "--stage", "stage", "--description", "Scenes"),
        *("--license", "CC-BY-4.0", "--provider", "ACME:producer,host", "--keyword", "demo", "--to", "tree"),
        cwd=inventory,
    )
    assert p.returncode == 3, p.stderr  # two records failed; the rest is staged and described
    coll = orjson.loads((inventory / "tree" / "inventory" / "collection.json").read_bytes())
    validate(coll, "collection")
    validate(orjson.loads((inventory / "tree" / "catalog.json").read_bytes()), "catalog")
    assert coll["description"] == "Scenes" and coll["license"] == "CC-BY-4.0" and coll["keywords"] == ["demo"]
    assert coll["providers"] == [{"name": "ACME", "roles": ["producer", "host"]}]
    assert coll["extent"]["spatial"]["bbox"] == [[4.0, 50.0, 6.0, 52.0]]
    # first start to last end (the items have ranges)
    assert coll["extent"]["temporal"]["interval"] == [["2021-06-01T10:00:00Z", "2021-06-03T00:00:00Z"]]
    assert coll["summaries"]["platform"] == ["landsat-8", "sentinel-2a"]
    assert coll["summaries"]["instruments"] == ["MSI", "OLI"]  # array members, flattened
    items = list((inventory / "tree" / "inventory").glob("*/*.json"))
    assert len(items) == 2
    for path in items:
        validate_item(orjson.loads(path.read_bytes()))


def test_transform_applies_the_language_to_staged_items(inventory: Path) -> None:
    stage = str(inventory / "stage")
    load(stage, [str(inventory / "inv.csv")], mapping=read_mapping(str(inventory / "map.yaml")))
    before = staged(stage)
    (inventory / "t.yaml").write_text(
        """
where: "properties.platform LIKE 'landsat%'"
properties:
  platform: {sql: "upper(properties.platform)"}
  title: "{properties.platform} {id}"
  quality: {case: [{when: "properties.\\"eo:cloud_cover\\" < 20", then: good}], else: poor}
assets:
  data: {href: {sql: "replace(assets.data.href, 's3://bucket/', 's3://other/')"}}
rename: {properties.label: properties.name_label}
unset: [properties.origin]
"""
    )
    p = cli("transform", "--stage", "stage", "--mapping", "t.yaml", cwd=inventory)
    assert p.returncode == 0, p.stderr
    after = staged(stage)
    one, two = after["landsat-8_T31UFQ_S1"], after["sentinel-2a_T32ABC_S2"]
    assert two == before["sentinel-2a_T32ABC_S2"]  # not selected: untouched
    props = one["properties"]
    assert props["platform"] == "LANDSAT-8" and props["title"] == "LANDSAT-8 landsat-8_T31UFQ_S1"
    assert props["quality"] == "good" and props["name_label"] == "landsat-8 / T31UFQ" and "label" not in props
    assert "origin" not in props and "updated" in props
    assert one["assets"]["data"]["href"] == "s3://other/S1.tif"
    assert one["assets"]["data"]["roles"] == ["data"]  # only the leaf that was named changed
    paths = stacbatch.open_stage(stage).sql("SELECT paths FROM audit WHERE operation = 'update'").fetchall()
    assert "assets.data.href" in paths[0][0] and "properties.name_label" in paths[0][0]
    (inventory / "bad.yaml").write_text("properties:\n  x: {column: properties.nope, cast: int}\nfoo: 1\n")
    p = cli("transform", "--stage", "stage", "--mapping", "bad.yaml", cwd=inventory)
    assert p.returncode == 4 and "bad.yaml:3: foo: unknown key" in p.stderr


def test_csv_dialect_options(tmp_path: Path) -> None:
    """Delimiter, quoting (a delimiter and a quote inside a field), a Latin-1 file, no header."""
    text = 'r1;2021-05-01;"Café; ""quoted""";1.5;2.5\nr2;2021-05-02;plain;3.5;4.5\n'
    (tmp_path / "data.txt").write_bytes(text.encode("latin-1"))
    (tmp_path / "m.yaml").write_text(
        "source: {format: csv, delimiter: ';', encoding: latin-1, header: false}\n"
        "id: {column: column0}\ndatetime: {column: column1}\ngeometry: {lonlat: [column3, column4]}\n"
        "properties: {label: {column: column2}}\n"
    )
    stage = str(tmp_path / "stage")
    res = load(stage, [str(tmp_path / "data.txt")], mapping=read_mapping(str(tmp_path / "m.yaml")))
    assert res.failed == 0
    items = staged(stage)
    assert items["r1"]["properties"] == {"datetime": "2021-05-01T00:00:00Z", "label": 'Café; "quoted"'}
    assert items["r2"]["geometry"] == {"type": "Point", "coordinates": [3.5, 4.5]}


def test_mapped_query_columns_equal_what_parsing_the_items_gives(inventory: Path) -> None:
    """Mapped rows are staged from the columns DuckDB and shapely computed, not by parsing each item: the result
    must be what the generic path derives from the same item texts (query columns, WKB, content hash)."""
    stage, again = str(inventory / "stage"), str(inventory / "again")
    (inventory / "both.yaml").write_text(
        MAPPING.replace("geometry: {wkt: wkt}", "geometry: [{wkt: wkt}, {lonlat: [lon, lat]}]")
    )
    load(stage, [str(inventory / "inv.csv")], mapping=read_mapping(str(inventory / "both.yaml")))
    texts = [j for (j,) in stacbatch.open_stage(stage).sql("SELECT item FROM items").fetchall()]
    (inventory / "items.ndjson").write_text("\n".join(texts) + "\n")
    load(again, [str(inventory / "items.ndjson")])
    cols = "collection, id, datetime, start_datetime, end_datetime, bbox, geometry, content_hash, item"
    a = stacbatch.open_stage(stage).sql(f"SELECT {cols} FROM items ORDER BY id").fetchall()
    b = stacbatch.open_stage(again).sql(f"SELECT {cols} FROM items ORDER BY id").fetchall()
    assert len(a) == 3 and a == b  # S3's date does not parse; S4's garbage WKT falls back to lon/lat


def test_template_text_of_each_column_type(tmp_path: Path) -> None:
    """Templates show a value as the item would: text as is, integers in digits, doubles, dates and JSON values
    through their JSON form (unquoted)."""
    src = tmp_path / "recs.parquet"
    pq.write_table(
        pa.table(
            {
                "name": ["a b", 'q"uote'],
                "n": pa.array([7, -12], pa.int64()),
                "small": pa.array([3, 4], pa.int16()),
                "x": [1.5, 30.0],
                "day": pa.array([18628, 18629], pa.date32()),
                "lon": [1.0, 2.0],
                "lat": [3.0, 4.0],
            }
        ),
        src,
    )
    (tmp_path / "m.yaml").write_text(
        'id: "{name}-{n}"\ndatetime: {column: day}\ngeometry: {lonlat: [lon, lat]}\n'
        'properties:\n  label: {template: "{name}|{n}|{small}|{x}|{day}"}\n'
    )
    stage = str(tmp_path / "stage")
    res = load(stage, [str(src)], mapping=read_mapping(str(tmp_path / "m.yaml")))
    assert res.failed == 0
    labels = {i: it["properties"]["label"] for i, it in staged(stage).items()}
    assert labels == {"a b-7": "a b|7|3|1.5|2021-01-01", 'q"uote--12': 'q"uote|-12|4|30.0|2021-01-02'}


def test_a_csv_row_duckdb_cannot_read_is_a_failure_not_the_end(tmp_path: Path) -> None:
    """A malformed row past what the sniffer samples (20,480 lines) goes to the failures with its line; the rest
    is staged, and the load exits with the partial-failure code."""
    rows = [f"r{i},2021-06-01,{i % 90},{i % 45}" for i in range(21_000)]
    rows[20_900] += ",extra"
    (tmp_path / "big.csv").write_text("rid,day,lon,lat\n" + "\n".join(rows) + "\n")
    (tmp_path / "m.yaml").write_text("id: {column: rid}\ndatetime: {column: day}\ngeometry: {lonlat: [lon, lat]}\n")
    stage = tmp_path / "stage"
    p = cli("load", str(tmp_path / "big.csv"), "--mapping", str(tmp_path / "m.yaml"), "--stage", str(stage))
    assert p.returncode == 3, p.stderr
    assert "Traceback" not in p.stderr
    assert len(staged(str(stage))) == 20_999
    (run,) = (stage / "runs").iterdir()
    (failure,) = [orjson.loads(line) for line in (run / "failures.ndjson").read_text().splitlines()]
    assert failure["line"] == 20_902 and "Expected Number of Columns" in failure["reason"]


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "sql"])
def test_case_of_text_is_text_and_constants_stay_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: bool
) -> None:
    """A CASE whose outcomes are all text gives text (so a cast or split reads the text, not its JSON quoting);
    a mixed one keeps each outcome's type; a {const: ...} is written as given, null ones left out."""
    from stacbatch.mapping import _assemble

    monkeypatch.setattr(_assemble, "available", lambda: kernel)
    (tmp_path / "in.csv").write_text("k,v\na,1\nb,2\n")
    (tmp_path / "m.yaml").write_text(
        "id: {column: k}\ndatetime: {const: '2021-01-01'}\ngeometry: {lonlat: [v, v]}\n"
        "properties:\n"
        "  level: {case: [{when: \"k = 'a'\", then: '5'}], else: '7', cast: int}\n"
        "  parts: {case: [{when: \"k = 'a'\", then: 'x;y'}], else: '{k};z', split: ';'}\n"
        "  mixed: {case: [{when: \"k = 'a'\", then: 1.5}], else: 'none'}\n"
        "  software: {const: {tool: '1.0', flags: [true, null]}}\n"
        "  nothing: {const: null}\n"
    )
    stage = str(tmp_path / "stage")
    res = load(stage, [str(tmp_path / "in.csv")], mapping=read_mapping(str(tmp_path / "m.yaml")), workers=1)
    assert res.failed == 0
    items = staged(stage)
    a, b = items["a"]["properties"], items["b"]["properties"]
    assert (a["level"], b["level"]) == (5, 7)
    assert (a["parts"], b["parts"]) == (["x", "y"], ["b", "z"])
    assert (a["mixed"], b["mixed"]) == (1.5, "none")
    assert a["software"] == b["software"] == {"tool": "1.0", "flags": [True, None]}
    assert "nothing" not in a and "nothing" not in b
    fields = res.mapping[str(tmp_path / "in.csv")].fields
    assert fields["properties.software"].set == 2 and fields["properties.nothing"].set == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_ndjson_line_that_is_not_json_is_a_failure_not_the_end(tmp_path: Path, workers: str) -> None:
    """Lines that are not JSON objects become failures with their line numbers; records after them keep their
    record numbers (a bad date two records on is reported as that record); the rest is staged, exit 3."""
    good = [{"rid": f"r{i}", "day": "2021-06-01", "lon": i % 90, "lat": i % 45} for i in range(3000)]
    good[1500]["day"] = "not a date"
    lines = [orjson.dumps(r).decode() for r in good]
    lines[1498:1498] = ['{"rid": "x", "day":', "", "garbage", "   "]  # lines 1499 and 1501 are bad; two blank
    (tmp_path / "in.ndjson").write_text("\n".join(lines) + "\n")
    (tmp_path / "m.yaml").write_text("id: {column: rid}\ndatetime: {column: day}\ngeometry: {lonlat: [lon, lat]}\n")
    stage = tmp_path / "stage"
    args = ["--mapping", str(tmp_path / "m.yaml"), "--stage", str(stage), "--workers", workers]
    p = cli("load", str(tmp_path / "in.ndjson"), *args)
    assert p.returncode == 3, p.stderr
    assert "Traceback" not in p.stderr
    items = staged(str(stage))
    assert len(items) == 2999 and "r1500" not in items and "x" not in items
    (run,) = (stage / "runs").iterdir()
    failures = [orjson.loads(line) for line in (run / "failures.ndjson").read_text().splitlines()]
    by_line = {f["line"]: f for f in failures if "line" in f}
    assert sorted(by_line) == [1499, 1501]
    assert by_line[1499]["reason"].startswith("not valid JSON") and "one JSON object per line" in by_line[1499]["hint"]
    (dated,) = [f for f in failures if "row" in f]
    assert dated["row"] == 1503  # r1500: 1,500 good records and the two unreadable lines before it
    assert "datetime" in dated["reason"]


def test_the_prepared_select_follows_a_batch_whose_columns_differ(tmp_path: Path) -> None:
    """The compiled SELECT is prepared once per process; a batch whose column types differ from the first's gives
    the same items as a fresh mapper does (DuckDB binds the prepared statement again)."""
    from stacbatch.mapping._run import Mapper
    from stacbatch.mapping._source import MappedSource

    (tmp_path / "in.csv").write_text("k,v,day\na,1,2021-01-01\nb,2,2021-01-02\n")
    (tmp_path / "m.yaml").write_text(
        "id: {column: k}\ndatetime: {column: day}\ngeometry: {lonlat: [v, v]}\n"
        "properties: {v: {column: v, cast: int}}\n"
    )
    doc = read_mapping(str(tmp_path / "m.yaml"))
    source = MappedSource(str(tmp_path / "in.csv"), doc)
    (unit,) = list(source.units())
    mapper = Mapper(doc, source.columns)
    first = mapper.run(unit.source, unit.records, 1)
    as_text = unit.records.set_column(1, "v", unit.records.column("v").cast(pa.string()))
    again = mapper.run(unit.source, as_text, 1)
    fresh = Mapper(doc, source.columns).run(unit.source, as_text, 1)
    assert first.columns is not None and again.columns is not None and fresh.columns is not None
    assert again.columns.column("item").to_pylist() == fresh.columns.column("item").to_pylist()
    assert again.columns.column("item").to_pylist() == first.columns.column("item").to_pylist()


def test_a_csv_is_read_with_the_dialect_its_sniffer_found_written_out(tmp_path: Path) -> None:
    """The reading SELECT spells out the sniffed dialect and types (binding it does not sniff again): same rows as
    auto-detection for tabs and CRLF, quotes in names, a Latin-1 file without header, a sample-sized file."""
    import duckdb

    from stacbatch.mapping._read import sniffed_csv_sql, source_sql

    odd = tmp_path / "it's here"
    odd.mkdir()
    (odd / "q'.csv").write_text("k,it's,day\na,1,2021-01-01\nb,,2021-01-02\n")
    (tmp_path / "t.tsv").write_bytes(b"a\tb\r\n1\tx\r\n2\t\r\n")
    (tmp_path / "l.txt").write_bytes('r1;"Café; ""q""";1.5\nr2;plain;3.5\n'.encode("latin-1"))
    rows = "".join(f'r{i},{i % 7 or ""},{i * 0.5},"t{i}, x"\n' for i in range(25_000))
    (tmp_path / "big.csv").write_text("id,n,f,t\n" + rows)
    cases = [
        (odd / "q'.csv", {}),
        (tmp_path / "t.tsv", {}),
        (tmp_path / "l.txt", {"format": "csv", "delimiter": ";", "encoding": "latin-1", "header": False}),
        (tmp_path / "big.csv", {}),
    ]
    con = duckdb.connect()
    for path, options in cases:
        explicit = sniffed_csv_sql(con, str(path), options)
        assert explicit is not None and "auto_detect = false" in explicit
        auto = con.sql(source_sql(str(path), options, rejects=True))
        spelled = con.sql(explicit)
        assert spelled.columns == auto.columns and spelled.types == auto.types
        assert spelled.fetchall() == auto.fetchall()


def test_mapped_items_carry_no_layout_links_until_a_tree_is_emitted(inventory: Path) -> None:
    """Issue 18: a mapping no longer invents `../collection.json` (no such file beside NDJSON or in the stage);
    the tree emit writes root, parent and collection links that resolve, and its items are valid STAC."""
    stage = str(inventory / "stage")
    p = cli("load", "inv.csv", "--mapping", "map.yaml", "--stage", "stage", cwd=inventory)
    assert p.returncode == 3, p.stderr  # two records fail (test_csv_makes_valid_items_and_reports_failed_records)
    p = cli("emit", "--stage", "stage", "-f", "ndjson", "-o", "out.ndjson", "--single-file", cwd=inventory)
    assert p.returncode == 0, p.stderr
    lines = read_ndjson(inventory / "out.ndjson")
    assert len(lines) == 2
    for doc in lines:
        assert [lk["rel"] for lk in doc["links"]] == ["via"], doc["links"]
    p = cli("emit", "--stage", "stage", "-f", "json", "-o", "tree", cwd=inventory)
    assert p.returncode == 0, p.stderr
    paths = sorted((inventory / "tree").glob("inventory/*/*.json"))
    assert len(paths) == 2
    for path in paths:
        doc = orjson.loads(path.read_bytes())
        validate_item(doc)
        rels = {lk["rel"]: lk["href"] for lk in doc["links"]}
        assert rels["via"].startswith("https://example.com/scenes/")
        for rel in ("root", "parent", "collection"):
            assert (path.parent / rels[rel]).resolve().is_file(), (rel, rels[rel])
        target = orjson.loads((path.parent / rels["collection"]).read_bytes())
        assert target["id"] == "inventory"
    del stage


NON_FINITE_CSV = "id,lon,lat,v\na,1,2,1.5\nb,3,4,inf\nc,5,6,2\nd,7,8,NaN\ne,9,9,3\n"
NON_FINITE_MAPPING = """
collection: c
id: {column: id}
datetime: "2020-01-01T00:00:00Z"
geometry: {lonlat: [lon, lat]}
properties:
  x: {sql: "CASE WHEN id = 'a' THEN 1e308 * 10 ELSE 1.0 END"}
  y: {column: v, cast: float}
  z: {sql: "CASE WHEN id = 'c' THEN '[1e999]'::JSON END"}
"""


@pytest.mark.parametrize("kernel", [True, False])
def test_mapped_values_that_are_not_finite_numbers_fail_their_records(tmp_path: Path, kernel: bool) -> None:
    """Issue 18: `sql:` values (and float columns) giving NaN, an infinity or 1e999 were staged as `Infinity`,
    `NaN`, `1e999`, whichever way the item text is made (the kernel, or SQL)."""
    from stacbatch.mapping._run import Mapper

    (tmp_path / "m.yaml").write_text(NON_FINITE_MAPPING)
    columns = {"id": "VARCHAR", "lon": "DOUBLE", "lat": "DOUBLE", "v": "VARCHAR"}
    mapper = Mapper(read_mapping(str(tmp_path / "m.yaml")), columns, assemble=kernel)
    batch = pa.table(
        {"id": list("abcde"), "lon": [1.0, 3, 5, 7, 9], "lat": [2.0, 4, 6, 8, 9], "v": ["1.5", "inf", "2", "NaN", "3"]}
    )
    got = mapper.run("in.csv", batch, 1)
    fails = [(f["row"], f["id"], f["field"], f["reason"]) for f in got.failures]
    reason = "not a finite JSON number (NaN, Infinity or beyond a double's range)"
    assert fails == [
        (1, "a", "properties.x", reason),
        (2, "b", "properties.y", reason),
        (3, "c", "properties.z[0]", reason),
        (4, "d", "properties.y", reason),
    ]
    assert got.columns is not None and got.columns.column("__id").to_pylist() == ["e"]
    assert (got.stats.items, got.stats.failed) == (1, 4)


def test_cli_load_of_non_finite_mapped_values_then_emit(tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text(NON_FINITE_CSV)
    (tmp_path / "m.yaml").write_text(NON_FINITE_MAPPING)
    p = cli("load", "in.csv", "--mapping", "m.yaml", "--stage", "stage", cwd=tmp_path)
    assert p.returncode == 3 and "Traceback" not in p.stderr, p.stderr
    for row, item_id, field in ((1, "a", "properties.x"), (2, "b", "properties.y"), (3, "c", "properties.z[0]")):
        assert f"in.csv record {row}: item '{item_id}': field {field}: not a finite JSON number" in p.stderr
    assert sorted(staged(str(tmp_path / "stage"))) == ["e"]
    p = cli("emit", "--stage", "stage", "-f", "ndjson", "-o", "out.ndjson", "--single-file", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    import json

    def refuse(token: str) -> None:
        raise AssertionError(token)

    lines = (tmp_path / "out.ndjson").read_text().splitlines()
    assert len(lines) == 1
    for line in lines:
        json.loads(line, parse_constant=refuse)
