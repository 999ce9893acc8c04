"""Validation speed: the fresh stage's items through ``stacbatch validate`` (schemas only, then with the named
checks) beside stac-valid, the reference validator: its default mode on a sample of the same items (it does ~15-30
items/s here, so the whole set would take hours; items/s is what is compared), and its fast mode (``stac-validator
fast``: fastjsonschema, its fastest schema-only mode) on the same items, up to 100k. Everything reads the schemas
offline from ../shared/schemas. Fast mode has no schema map: its disk cache is seeded with the folder's files under
the names it looks for, and projjson v0.2/v0.4/v0.5 (``$ref``ed by projection schemas, absent from the folder, and
reached by no generated item) get v0.7's document, or it would retry the network for every item. It is measured
twice: the whole run (compiling a validator per combination of version and extensions takes most of it) and its own
timer's execution time per object.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable
from itertools import islice
from pathlib import Path

import orjson

from bench._measure import Measurement, run

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT.parent / "shared" / "schemas"
#: items stac-valid validates (a sample: ~15 items/s)
SAMPLE = 300

STAC_VALID = """
import copy, json, sys, time
from itertools import islice
from stac_validator.validate import StacValidate
schemas = sys.argv[2]
index = json.load(open(schemas + "/INDEX.json"))
mapping = {url: schemas + "/" + path for url, path in index.items()}
with open(sys.argv[1]) as f:
    items = [json.loads(line) for line in islice(f, int(sys.argv[3]))]
for item in items:
    StacValidate(schema_map=mapping).validate_dict(copy.deepcopy(item))
"""

STAC_VALID_FAST = """
import sys
sys.stdout = sys.stderr  # its summary, with its own timer, is read from stderr (the bench discards stdout)
from stac_validator.fast_validator import FastValidator
FastValidator(sys.argv[1], quiet=False).run()
"""
#: items stac-valid's fast mode validates (the same items as stacbatch, up to this many)
FAST_MAX = 100_000


def _fast_setup(src: Path, work: Path, n: int) -> tuple[Path, Path]:
    """stac-valid's schema cache seeded from the schema folder, and the items as one FeatureCollection file."""
    cache = work / "stac-valid-cache"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    index = orjson.loads((SCHEMAS / "INDEX.json").read_bytes())
    for url, rel in index.items():
        name = url.replace("https://", "").replace("http://", "").replace("/", "_")
        shutil.copyfile(SCHEMAS / rel, cache / name)
    for missing in ("v0.2", "v0.4", "v0.5"):
        shutil.copyfile(SCHEMAS / "projjson" / "v0.7.json", cache / f"proj.org_schemas_{missing}_projjson.schema.json")
    fc = work / "stac-valid-items.json"
    with open(src, "rb") as f, open(fc, "wb") as out:
        out.write(b'{"type":"FeatureCollection","features":[')
        for i, line in enumerate(islice(f, n)):
            out.write((b"," if i else b"") + line.rstrip(b"\n"))
        out.write(b"]}")
    return cache, fc


def bench_validate(
    n: int,
    src: Path,
    stage: Path,
    sb: list[str],
    add: Callable[[str, str, int, Measurement], None],
    sample: int = SAMPLE,
) -> None:
    if not SCHEMAS.is_dir():
        print(f"  skipped validate: no schema folder at {SCHEMAS}", file=sys.stderr)
        return
    # exit 3 (some items invalid: the generated items include some) counts as a finished run
    ok3 = "rc=$?; [ $rc -eq 0 ] || [ $rc -eq 3 ]"
    for step, checks in (("validate (schemas only)", "none"), ("validate (schemas + checks)", "default")):
        cmd = " ".join([*sb, "validate", "--stage", str(stage), "--schemas", str(SCHEMAS), "--checks", checks])
        add(step, "stacbatch", n, run(["bash", "-c", f"{cmd} >/dev/null; {ok3}"]))
    if sample > 0:
        cmd = [sys.executable, "-c", STAC_VALID, str(src), str(SCHEMAS), str(sample)]
        add("validate (schemas only)", "stac-valid (a sample)", sample, run(cmd))
    fast_n = min(n, FAST_MAX)
    cache, fc = _fast_setup(src, stage.parent, fast_n)
    m = run([sys.executable, "-c", STAC_VALID_FAST, str(fc)], env={"STAC_VALIDATOR_CACHE_DIR": str(cache)})
    add("validate (schemas only)", "stac-valid fast", fast_n, m)
    # its own timer: "Average Exec per Object : 0.520 ms"
    found = re.search(r"Average Exec per Object\s*:\s*([0-9.]+)\s*ms", m.stderr)
    if found and m.returncode == 0:
        exec_only = Measurement(fast_n * float(found.group(1)) / 1000, m.peak_mb, 0, "")
        add("validate (schemas only)", "stac-valid fast (its exec timer)", fast_n, exec_only)
    fc.unlink()
    shutil.rmtree(cache, ignore_errors=True)
