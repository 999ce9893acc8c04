"""Batch edits on a loaded stage: update, delete, diff and merge at the issue's proportions.

B is a copy of the stage A with 1% of items modified (one property), 0.5% deleted and 0.5% added; then
``diff A B`` (writing the change set), ``update`` of one property on every item of a third copy, ``extend`` with
alternate-assets on that copy (and again: a no-op), ``extend`` with dgeo CIDs from a manifest of every asset
href (and again), and ``merge`` of the change set into A. No other tool does
these on a staged catalog, so there are no anchors: the figures are seconds and peak memory against the issues'
budgets (diff 5 s, update 30 s, merge 30 s, 2 GB at 1M items; extend within the update budget).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from bench._measure import Measurement, discard, run
from bench.generate import write_ndjson


def _cid_manifest(stage: Path, out: Path) -> Path:
    """href -> CID for every asset of the stage, as IPFS tooling would list them (the bench's assets are not
    real files: each CID is made of the href's SHA-256 in base32 letters)."""
    import pyarrow.parquet as pq

    import stacbatch

    cid = "'bafkrei' || translate(substr(sha256(href), 1, 52), '0189', 'wxyz')"
    hrefs = "SELECT DISTINCT unnest(map_values(asset_fields.href)) AS href FROM items"
    table = stacbatch.open_stage(str(stage)).sql(f"SELECT href, {cid} AS cid FROM ({hrefs})").to_arrow_table()
    pq.write_table(table, out)
    return out


def bench_edits(n: int, stage: Path, work: Path, sb: list[str], add: Callable[[str, str, Measurement], None]) -> None:
    a = stage
    b = work / "stage-b"
    c = work / "stage-c"
    for p in (b, c):
        discard(p)
    shutil.copytree(a, b)
    shutil.copytree(a, c)
    added = work / "added.ndjson"
    write_ndjson(added, max(1, n // 200), seed=7)
    # B: 1% modified, 0.5% deleted, 0.5% added (hash(id) picks a stable pseudo-random share)
    add(
        "update 1% (1 property)",
        "stacbatch",
        run([*sb, "update", "--stage", str(b), "--where", "hash(id) % 100 = 0", "--set", "properties.bench='x'"]),
    )
    add("delete 0.5%", "stacbatch", run([*sb, "delete", "--stage", str(b), "--where", "hash(id) % 200 = 1"]))
    add("load 0.5% new", "stacbatch", run([*sb, "load", str(added), "--stage", str(b)]))
    cs = work / "changes.parquet"
    add("diff A B (counts)", "stacbatch", run([*sb, "diff", str(a), str(b)]))
    add("diff A B (+change set)", "stacbatch", run([*sb, "diff", str(a), str(b), "--out", str(cs)]))
    add(
        "update all (1 property)",
        "stacbatch",
        run([*sb, "update", "--stage", str(c), "--where", "true", "--set", "properties.platform='bench'"]),
    )
    # extensions on the third copy: CMR-STAC's s3_<key> assets folded into alternates (about a third of the items
    # have some), then the same again, which finds nothing to do and rewrites no file
    ext = [*sb, "extend", "--stage", str(c), "-e", "alternate-assets", "--no-validate"]
    add("extend alternate-assets", "stacbatch", run(ext))
    add("extend again (no-op)", "stacbatch", run(ext))
    # dgeo from a manifest of every asset href (CIDs of the right form, made from each href's hash), then again
    manifest = _cid_manifest(c, work / "cids.parquet")
    config = work / "dgeo.yaml"
    config.write_text(f"manifest:\n  path: {manifest}\n")
    dgeo = [*sb, "extend", "--stage", str(c), "-e", "dgeo", "--config", str(config), "--no-validate"]
    add("extend dgeo (manifest)", "stacbatch", run(dgeo))
    add("extend dgeo again (no-op)", "stacbatch", run(dgeo))
    add("merge change set", "stacbatch", run([*sb, "merge", str(cs), "--stage", str(a), "--mode", "mirror"]))
    add("diff A B after merge", "stacbatch", run([*sb, "diff", str(a), str(b), "--exit-code"]))
