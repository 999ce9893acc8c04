"""Validation speed: the fresh stage's items through ``stacbatch validate`` (schemas only, then with the named
checks) beside stac-valid, the reference validator, on a sample of the same items (it does ~15 items/s here, so the
whole set would take hours; items/s is what is compared). Both read the schemas offline from ../shared/schemas.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

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
