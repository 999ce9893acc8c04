"""``make demo``: load the bundled sample into a local stage, summarise it, query it, validate it, edit and extend
it, diff it, emit it (with the validation gate).

Each step is the real CLI, shown as the command a user would type.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def _run(*args: str, ok: tuple[int, ...] = (0,)) -> None:
    print(f"\n$ stacbatch {' '.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "stacbatch", *args], check=False)
    if proc.returncode not in ok:
        raise SystemExit(f"demo: step failed with exit code {proc.returncode}")


def _cid_manifest(out: Path, collection: str) -> str:
    """A CID manifest (href -> CID) for a collection's assets, and a dgeo configuration naming it. The sample's
    files are not on this machine, so each CID is that of the href's own text: the form IPFS tooling prints."""
    import csv

    import stacbatch
    from stacbatch.extend._cid import PROFILES, cid_of_bytes

    out.mkdir(parents=True, exist_ok=True)
    rows = (
        stacbatch.open_stage("demo-stage")
        .sql(
            "SELECT DISTINCT href FROM (SELECT unnest(map_values(asset_fields.href)) AS href FROM items "
            f"WHERE collection = '{collection}') WHERE href <> '' ORDER BY 1"
        )
        .fetchall()
    )
    profile = PROFILES["unixfs-v1-2025"]
    with (out / "cids.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["href", "cid"])
        w.writerows((href, cid_of_bytes(href.encode(), profile)) for (href,) in rows)
    (out / "dgeo.yaml").write_text("manifest:\n  path: cids.csv\n  profile: unixfs-v1-2025\nipfs_alternate: true\n")
    print(
        f"\n# wrote {out.name}/cids.csv: {len(rows):,} hrefs of {collection} -> CIDs "
        "(stand-ins: the files are not here)"
    )
    return str((out / "dgeo.yaml").relative_to(Path.cwd()))


def main() -> None:
    root = Path.cwd()
    sample = root / "samples"
    items = sample / "demo-items.ndjson.gz"
    if not items.exists():
        raise SystemExit(f"demo: {items} not found; run `make demo` from the repository root")
    stage, out = root / "demo-stage", root / "demo-out"
    for path in (stage, out):
        shutil.rmtree(path, ignore_errors=True)
    collections = sorted(str(p.relative_to(root)) for p in (sample / "collections").glob("*.json"))
    _run("load", str(items.relative_to(root)), *collections, "--stage", "demo-stage")
    _run("info", "--stage", "demo-stage", "--no-properties")
    _run(
        "sql",
        "--stage",
        "demo-stage",
        "SELECT collection, count(*) AS items, min(datetime) AS first, max(datetime) AS last, "
        'round(avg("eo:cloud_cover"), 1) AS mean_cloud FROM items GROUP BY ALL ORDER BY 1',  # a typed column
    )
    _run(
        "sql",
        "--stage",
        "demo-stage",
        "SELECT id, datetime, platform FROM items "
        "WHERE collection = 'HLSL30_2.0' AND \"eo:cloud_cover\" < 5 "
        "ORDER BY datetime DESC LIMIT 5",
    )
    # The sample holds five items that are invalid on purpose (INVALID-* ids): validate finds them (exit 3: some
    # invalid), its verdicts land in the stage's `validation` view, and the JSON emit below leaves them out.
    _run("validate", "--stage", "demo-stage", "--failures", "demo-out/invalid-items.ndjson", ok=(0, 3))
    _run(
        "sql",
        "--stage",
        "demo-stage",
        "SELECT collection, rule, count(*) AS items, any_value(id) AS example FROM validation "
        "WHERE NOT valid GROUP BY ALL ORDER BY 1, 2",
    )
    # Batch edits: keep a copy of the stage as it was loaded, edit, then compare the two.
    shutil.copytree(stage, out / "stage-as-loaded")
    _run(
        "update",
        "--stage",
        "demo-stage",
        "--where",
        "collection = 'HLSL30_2.0' AND \"eo:cloud_cover\" > 90",
        "--set",
        'properties."demo:cloudy"=true',
        "--set",
        "assets.thumbnail.href=replace(assets.thumbnail.href, 'https://', 's3://')",
    )
    _run("delete", "--stage", "demo-stage", "--where", "collection = 'MOD09GA_061' AND datetime < '2019-01-01'")
    # an extension over the batch: the CMR-like items' s3_<key> assets become <key>.alternate.s3 (alternate-assets)
    # (exit 3: a planted invalid item is among those it changed, and the validation afterwards says so)
    _run("extend", "--stage", "demo-stage", "--extension", "alternate-assets", ok=(0, 3))
    # dgeo: IPFS CIDs of one collection's assets, from a manifest as `ipfs add` tooling would write it
    config = _cid_manifest(root / "demo-out", "landsat-c2-l2")
    _run("extend", "--stage", "demo-stage", "-e", "dgeo", "--config", config, "-c", "landsat-c2-l2", ok=(0, 3))
    _run(
        "sql",
        "--stage",
        "demo-stage",
        'SELECT collection, count(*) AS items, sum(len("dgeo:cids")) AS cids FROM items '
        'WHERE "dgeo:cids" IS NOT NULL GROUP BY ALL',
    )
    _run("diff", "demo-out/stage-as-loaded", "demo-stage", "--out", "demo-out/changes.parquet")
    _run(
        "sql",
        "--stage",
        "demo-stage",
        "SELECT run_id, operation, count(*) AS items, any_value(paths) AS paths FROM audit GROUP BY ALL ORDER BY 1",
    )
    _run(
        *("emit", "--stage", "demo-stage", "--format", "json", "--to", "demo-out/catalog", "--title", "stacbatch demo"),
        *("--validate", "skip"),
        ok=(0, 3),  # 3: written, with the invalid items left out
    )
    _run("emit", "--stage", "demo-stage", "--format", "ndjson", "--to", "demo-out/ndjson")
    _run(
        "emit",
        "--stage",
        "demo-stage",
        "--format",
        "geoparquet",
        "--to",
        "demo-out/geoparquet",
        "--collection",
        "sentinel-2-l2a",
    )
    # a CSV inventory through a mapping: items, their Collection (extent, summaries) and a static catalog
    _run(
        *("scaffold", "samples/inventory.csv", "--mapping", "samples/inventory.yaml"),
        *("--stage", "demo-out/inventory-stage", "--description", "Demo scenes from a CSV inventory"),
        *("--license", "CC0-1.0", "--provider", "stacbatch demo:producer", "--to", "demo-out/inventory-catalog"),
    )
    print(
        "\nDone. Where everything went:\n"
        f"  stage (GeoParquet + manifest)  {stage}\n"
        f"  invalid items, one line each   {out / 'invalid-items.ndjson'}\n"
        f"  static STAC catalog (valid)    {out / 'catalog' / 'catalog.json'}\n"
        f"  NDJSON, one file a collection  {out / 'ndjson'}\n"
        f"  stac-geoparquet                {out / 'geoparquet'}\n"
        f"  change set of the edits        {out / 'changes.parquet'}\n"
        f"  catalog made from a CSV        {out / 'inventory-catalog' / 'catalog.json'}\n"
        "Open the stage in Python:  import stacbatch; stacbatch.open_stage('demo-stage').items"
    )


if __name__ == "__main__":
    main()
