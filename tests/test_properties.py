"""Property-based: whatever JSON an item carries comes back unchanged, and the hash ignores key order only."""

from __future__ import annotations

from pathlib import Path

import orjson
from conftest import canon
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stacbatch
from stacbatch.kernel import _canonical

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
coord = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
position = st.one_of(st.tuples(coord, coord).map(list), st.tuples(coord, coord, coord).map(list))
ring = st.lists(position, min_size=0, max_size=6)
geometry = st.one_of(
    st.none(),
    position.map(lambda p: {"type": "Point", "coordinates": p}),
    st.lists(position, max_size=5).map(lambda c: {"type": "LineString", "coordinates": c}),
    st.lists(ring, max_size=3).map(lambda r: {"type": "Polygon", "coordinates": r}),
    st.lists(st.lists(ring, max_size=2), max_size=3).map(lambda r: {"type": "MultiPolygon", "coordinates": r}),
)
datetimes = st.one_of(
    st.none(),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.sampled_from(
        [
            "2020-01-01T00:00:00.1234567Z",
            "2020-01-01T00:00:00+05:30",
            "2020-01-01",
            "not a date",
            "2020-01-01t10:00:00z",
            "2020-02-30T00:00:00Z",
        ]
    ),
)
items = st.fixed_dictionaries(
    {
        "type": st.just("Feature"),
        "id": st.text(min_size=1, max_size=10),
        "geometry": geometry,
        "properties": st.fixed_dictionaries({"datetime": datetimes}, optional={"extra": json_values}),
    },
    optional={
        "collection": st.sampled_from(["a", "b/c", "ü"]),
        "bbox": st.lists(coord, min_size=4, max_size=4),
        "assets": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
        "foreign": json_values,
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(items, min_size=1, max_size=6))
def test_any_item_round_trips(tmp_path_factory, batch: list[dict]) -> None:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("h")
    src = tmp / "in.ndjson"
    src.write_bytes(b"".join(orjson.dumps(i) + b"\n" for i in batch))
    res = stacbatch.load_to_stage(str(tmp / "stage"), [str(src)], batch_size=2)
    assert res.failed == 0
    expected = {(i.get("collection"), i["id"]): i for i in batch}
    out = tmp / "out.ndjson"
    stacbatch.emit_ndjson(stacbatch.open_stage(str(tmp / "stage")), str(out))
    got = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(got) == len(expected)
    for item in got:
        assert canon(item) == canon(expected[(item.get("collection"), item["id"])])


@given(value=json_values)
def test_hash_ignores_key_order_and_integral_floats(value: object) -> None:
    def reorder(v: object) -> object:
        if isinstance(v, dict):
            return {k: reorder(v[k]) for k in reversed(list(v))}
        if isinstance(v, list):
            return [reorder(x) for x in v]
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) < 2**53:
            return float(v)
        return v

    assert _canonical.content_hash(value) == _canonical.content_hash(reorder(value))


def test_hash_sees_real_changes() -> None:
    assert _canonical.content_hash({"a": 1}) != _canonical.content_hash({"a": 2})
    assert _canonical.content_hash({"a": None}) != _canonical.content_hash({})
    assert _canonical.content_hash({"a": True}) != _canonical.content_hash({"a": 1})
    assert _canonical.content_hash({"a": "1"}) != _canonical.content_hash({"a": 1})


def test_partitioning(tmp_path: Path) -> None:
    from helpers import item, write_ndjson

    big = [item(f"b{n}", collection="big", dt=f"20{10 + n % 5}-0{1 + n % 9}-01T00:00:00Z") for n in range(60)]
    small = [item(f"s{n}", collection="small", dt="2015-01-01T00:00:00Z") for n in range(3)]
    undated = [item("u", collection="big", dt=None)]
    src = write_ndjson(tmp_path / "a.ndjson", big + small + undated)
    stage = str(tmp_path / "stage")
    from stacbatch.stage import _manifest

    old = dict(_manifest.DEFAULT_SETTINGS)
    _manifest.DEFAULT_SETTINGS["time_bucket_min_items"] = 50
    try:
        stacbatch.load_to_stage(stage, [str(src)], time_bucket="month")
    finally:
        _manifest.DEFAULT_SETTINGS.clear()
        _manifest.DEFAULT_SETTINGS.update(old)
    st_ = stacbatch.open_stage(stage)
    dirs = {f["path"].rsplit("/", 1)[0] for f in st_.manifest.files}
    assert "items/collection=small" in dirs
    assert "items/collection=big/month=2010-01" in dirs and "items/collection=big/month=unknown" in dirs
    assert st_.manifest.collections["big"]["partitioning"] == "month"
    # each file is sorted by time
    for f in st_.manifest.files:
        times = st_.sql(f"SELECT datetime FROM read_parquet('{Path(stage) / f['path']}')").fetchall()
        values = [t[0] for t in times if t[0] is not None]
        assert values == sorted(values)


def test_notebook_code_runs(tmp_path: Path) -> None:
    """The quickstart notebook's cells (minus the plot) run against a stage like the demo's."""
    import json
    import shutil

    root = Path(__file__).resolve().parent.parent
    stage = tmp_path / "demo-stage"
    stacbatch.load_to_stage(str(stage), [str(root / "samples" / "demo-items.ndjson.gz")])
    nb = json.loads((root / "notebooks" / "quickstart.ipynb").read_text())
    (tmp_path / "notebooks").mkdir()
    shutil.copy(root / "notebooks" / "quickstart.ipynb", tmp_path / "notebooks")
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path / "notebooks")
    try:
        env: dict = {}
        for cell in nb["cells"]:
            src = "".join(cell["source"])
            if cell["cell_type"] == "code" and ".plot(" not in src:
                exec(compile(src, "notebook", "exec"), env)
    finally:
        os.chdir(cwd)
