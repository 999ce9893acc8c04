"""The C kernel must agree with the pure-Python path byte for byte: canonical streams (hence content hashes) and
every stage column of every line, on real items and on the odd ones; lines it cannot take go to Python intact."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from conftest import corpus_files, shared_path
from hypothesis import given, settings
from hypothesis import strategies as st

from stacbatch.kernel import _canonical, _scan
from stacbatch.sources import LinesUnit
from stacbatch.stage import _parse

if os.environ.get("STACBATCH_REQUIRE_KERNEL") == "1":  # `make test`: a kernel that failed to build is a failure
    import stacbatch.kernel._kernel as kernel
else:
    kernel = pytest.importorskip("stacbatch.kernel._kernel")


def _python_stream(value: Any) -> bytes:
    out = bytearray()
    _canonical._stream(value, out)
    return bytes(out)


def _corpus_lines() -> list[bytes]:
    shared_path("corpus", "real", "items")  # skips (CI: fails) without the shared corpus
    return [line for f in corpus_files("items") for line in f.read_bytes().splitlines() if line.strip()]


def test_canonical_matches_python_on_real_items() -> None:
    lines = _corpus_lines()
    assert len(lines) > 1000
    for line in lines:
        assert kernel.canonical(line, strict=True) == _python_stream(json.loads(line)), line[:120]


@pytest.mark.parametrize(
    "text",
    [
        b"1",
        b"1.0",
        b"-0",
        b"-0.0",
        b"1e2",
        b"1E-2",
        b"0.1",
        b"123456789.123456789",
        b"1.7976931348623157e308",
        b"5e-324",
        b"9223372036854775807",
        b"9223372036854775808",
        b"-9223372036854775808",
        b"-9223372036854775809",
        b"18446744073709551616",
        b"123456789012345678901234567890.5",
        b"0.000000000000000000000000001",
        b"1e400",
        b"NaN",
        b"-Infinity",
        b'"\\ud800x"',
        b'"\\ud83d\\ude00 \\u00e9 \\u0000 \\/ \\b\\f\\n\\r\\t"',
        b'{"\\u00e9":1,"e":2,"\xc3\xa9a":3}',
        b'{"b":{"z":1,"y":[1.5,2]},"a":null}',
        b" [ true , false , null , {} , [] ] ",
    ],
)
def test_canonical_matches_python_on_edge_values(text: bytes) -> None:
    assert kernel.canonical(text) == _python_stream(json.loads(text))


def test_duplicate_keys_keep_the_last_as_python_does() -> None:
    assert kernel.canonical(b'{"a":1,"b":0,"a":2}') == _python_stream({"a": 2, "b": 0})
    assert kernel.canonical(b'{"a":1,"a":2}') == _python_stream({"a": 2})


def test_key_order_and_integral_floats_do_not_change_the_stream() -> None:
    assert kernel.canonical(b'{"a":1,"b":[2.0]}') == kernel.canonical(b'{ "b" : [2], "a" : 1.0 }')


@pytest.mark.parametrize("text", [b"NaN", b'"\\udc00"', b"1e400", b"[1,]", b'{"a" 1}', b'"\x01"', b'"\xff"', b"01"])
def test_strict_mode_refuses_what_orjson_refuses(text: bytes) -> None:
    with pytest.raises(ValueError):
        kernel.canonical(text, strict=True)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json_values, st.booleans(), st.sampled_from([None, 1]))
def test_canonical_matches_python_on_generated_values(value: Any, ascii_only: bool, indent: int | None) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, indent=indent).encode("utf-8", "surrogatepass")
    assert kernel.canonical(text) == _python_stream(json.loads(text))


def test_hashes_agree_without_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _corpus_lines()[:300]
    with_kernel = [(_canonical.content_hash_text(line), _canonical.content_hash(orjson.loads(line))) for line in lines]
    monkeypatch.setattr(_canonical, "_kernel", None)
    without = [(_canonical.content_hash_text(line), _canonical.content_hash(orjson.loads(line))) for line in lines]
    assert with_kernel == without
    assert all(a == b for a, b in with_kernel)


# ---- scan_lines against the Python path, column by column


def _both_paths(data: bytes, monkeypatch: pytest.MonkeyPatch, batch_size: int = 50_000) -> tuple[Any, Any]:
    def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        res = _parse.parse_unit(LinesUnit("src.ndjson", 1, data), batch_size)
        rows = [r for b in res.batches for r in b.to_pylist()]
        return rows, res.failures, res.read

    fast = run()
    with monkeypatch.context() as m:
        m.setattr(_scan, "AVAILABLE", False)
        slow = run()
    return fast, slow


def _item(**over: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "a",
        "collection": "c",
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
        "bbox": [0, 0, 1, 1],
        "properties": {"datetime": "2020-01-01T00:00:00Z"},
        "links": [],
        "assets": {},
    }
    item.update(over)
    return item


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _odd_lines() -> list[bytes]:
    dt: list[Any] = [
        *("2020-01-01T00:00:00.1234567Z", "2020-01-01t00:00:00z", "2020-01-01", "2020-01-01 10:00:00+05:30"),
        *("2020-02-30T00:00:00Z", "2020-01-01T24:00:00Z", "2020-01-01T10:00Z", "2020-01-01T10:00:00,5Z", "2020"),
        *("0001-01-01T00:00:00-01:00", "2020-01-01T00:00:00.Z", "\u00e9" * 5, 20200101, None),
    ]
    geoms: list[Any] = [
        None,
        {"type": "Point", "coordinates": [1, 2, 3]},
        {"type": "Point", "coordinates": []},
        {"type": "Point", "coordinates": [1, 2, 3, 4]},
        {"type": "Point", "coordinates": [1]},
        {"type": "Point", "coordinates": [True, 2]},
        {"type": "Point"},
        {"type": "LineString", "coordinates": []},
        {"type": "LineString", "coordinates": [[0, 0, 1], [1, 1]]},
        {"type": "MultiPoint", "coordinates": [[0, 0], [1, 1]]},
        {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]], []]},
        {"type": "Polygon", "coordinates": [[[0, 0, 5], [1, 0, 5], [1, 1, 5]]]},
        {"type": "Polygon", "coordinates": []},
        {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1]]], [[[5, 5], [6, 5], [6, 6], [5, 5]]]]},
        {
            "type": "GeometryCollection",
            "geometries": [{"type": "Point", "coordinates": [9, 9]}, {"type": "GeometryCollection", "geometries": []}],
        },
        {"type": "Circle", "coordinates": [0, 0]},
        {"type": "Polygon", "coordinates": "x"},
        {"coordinates": [0, 0], "type": "Point", "bbox": [0, 0, 0, 0]},
        [1, 2],
        {"type": "Point", "coordinates": [1e308, -1e308]},
        {"type": "Point", "coordinates": [123456789012345678901234567890, 0]},
    ]
    boxes: list[Any] = [
        *(None, [0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 1, 1], [0, "0", 1, 1], [0, 0, "z", 1, 1, "z"], [True, 0, 1, 1]),
        *([0, 0, 1], [2**70, 0, 1, 1], "x", [], [0, 0, 1, 1, 2, 2, 3]),
    ]
    lines: list[bytes] = []
    for i, d in enumerate(dt):
        lines.append(_dump(_item(id=f"dt{i}", properties={"datetime": d, "start_datetime": d})))
    for i, g in enumerate(geoms):
        lines.append(_dump(_item(id=f"g{i}", geometry=g)))
        lines.append(_dump({k: v for k, v in _item(id=f"gb{i}", geometry=g).items() if k != "bbox"}))
    for i, b in enumerate(boxes):
        lines.append(_dump(_item(id=f"b{i}", bbox=b)))
    lines += [
        _dump(_item(id="")),
        _dump(_item(id=7)),
        _dump({k: v for k, v in _item().items() if k != "id"}),
        _dump(_item(id='esc"aped')),
        _dump(_item(id="\u00e9t\u00e9")),
        _dump(_item(collection=None, id="nocoll")),
        _dump({k: v for k, v in _item(id="nocoll2").items() if k != "collection"}),
        _dump(_item(collection="", id="emptycoll")),
        _dump(_item(collection=5, id="numcoll")),
        _dump(_item(id="noprops", properties=None)),
        _dump(_item(id="listprops", properties=[1])),
        b'{"id":"twice","id":"twice2","collection":"c","properties":{"datetime":"2020-01-01T00:00:00Z"},'
        b'"properties":{"start_datetime":"2021-01-01T00:00:00Z"},"geometry":null}',
        b'{"id":"nan","collection":"c","geometry":null,"properties":{"x":NaN}}',
        b'{"id":"big","collection":"c","geometry":null,"properties":{"x":18446744073709551616}}',
        b'{"id":"surrogate","collection":"c","geometry":null,"properties":{"x":"\\ud800"}}',
        b'{"id":"inf","collection":"c","geometry":null,"properties":{"x":1e400}}',
        b"[1, 2]",
        b"not json",
        b"   ",
        b"",
        _dump(_item(id="crlf")) + b"\r",
        b"  " + _dump(_item(id="lead")) + b"  \t",
        _dump(_item(id="a")),  # a duplicate of the first "a": order decides which wins
    ]
    return lines


def test_scan_matches_python_on_odd_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"\n".join(_odd_lines())
    fast, slow = _both_paths(data, monkeypatch)
    assert fast[2] == slow[2]
    assert fast[1] == slow[1]
    assert len(fast[0]) == len(slow[0])
    for a, b in zip(fast[0], slow[0], strict=True):
        assert a == b or _same_nan(a, b), (a["id"], a, b)


def _same_nan(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(a.values(), b.values(), strict=True)
    )


@pytest.mark.parametrize("batch_size", [1, 2, 50_000])
def test_scan_matches_python_on_real_items(monkeypatch: pytest.MonkeyPatch, batch_size: int) -> None:
    shared_path("corpus", "real", "items")
    for path in corpus_files("items")[:: 1 if batch_size == 50_000 else 7]:
        fast, slow = _both_paths(Path(path).read_bytes(), monkeypatch, batch_size)
        assert fast == slow, path


def test_the_kernel_takes_the_common_lines() -> None:
    shared_path("corpus", "real", "items")
    data = b"\n".join(line for f in corpus_files("items") for line in f.read_bytes().splitlines())
    scanned = _scan.scan_block(data)
    assert scanned.batch is not None
    assert scanned.batch.num_rows > 0.95 * (scanned.batch.num_rows + len(scanned.rest))


_coord = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.integers(-(10**6), 10**6)
_pos = st.lists(_coord, min_size=2, max_size=3)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.builds(lambda p: {"type": "Point", "coordinates": p}, _pos),
        st.builds(lambda r: {"type": "LineString", "coordinates": r}, st.lists(_pos, max_size=5)),
        st.builds(lambda r: {"type": "Polygon", "coordinates": [r]}, st.lists(_pos, min_size=1, max_size=6)),
        st.builds(
            lambda rs: {"type": "MultiPolygon", "coordinates": [[r] for r in rs]},
            st.lists(st.lists(_pos, min_size=1, max_size=4), max_size=3),
        ),
    ),
    st.booleans(),
)
def test_scan_matches_python_on_generated_geometries(geom: dict[str, Any], own_bbox: bool) -> None:
    item = _item(geometry=geom)
    if not own_bbox:
        del item["bbox"]
    data = orjson.dumps(item)
    with pytest.MonkeyPatch.context() as m:
        fast, slow = _both_paths(data, m)
    assert fast == slow


# ---- update --set through the kernel against the Python path


def _update_both(tmp_path: Path, sets: list[str], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    from stacbatch.edit import _rewrite, parse_cli_ops, update

    data = {"data": {"href": "h"}}
    docs = [
        _item(id=f"i{n}", properties={"datetime": "2021-01-01T00:00:00Z", "platform": "x", "n": n}, assets=data)
        for n in range(6)
    ]
    docs += [
        _item(id="same", properties={"datetime": "2021-01-01T00:00:00Z", "platform": "landsat-8"}, assets=data),
        _item(id="assets", assets={"data": {"href": "a", "roles": ["data"], "title": "T"}}),
        # in a file of their own: an item the kernel leaves to Python sends its whole file there
        _item(id="nullprops", properties=None, collection="odd"),
        {k: v for k, v in _item(id="noprops", collection="odd").items() if k != "properties"},
    ]
    src = tmp_path / "in.ndjson"
    src.write_bytes(b"".join(json.dumps(d).encode() + b"\n" for d in docs))
    out: list[Any] = []
    kernel_files: list[int] = []
    for kernel_on in (True, False):
        stage = str(tmp_path / f"stage-{kernel_on}")
        import stacbatch

        stacbatch.load_to_stage(stage, [str(src)], workers=1)
        patched: list[bool] = []
        real = _rewrite._update_patched

        def spy(*args: Any, _real: Any = real, _seen: list[bool] = patched) -> Any:
            out = _real(*args)
            _seen.append(out is not None)
            return out

        with monkeypatch.context() as m:
            m.setattr(_rewrite, "_KERNEL", kernel_on)
            m.setattr(_rewrite, "_update_patched", spy)
            m.setattr(_rewrite, "PATCH_ROWS", 3)  # several kernel calls per file
            res = update(stage, parse_cli_ops(sets, [], []), where="true", workers=1)
        kernel_files.append(sum(patched))
        st = stacbatch.open_stage(stage)
        items = {}
        for i, text in st.sql("SELECT id, item FROM items").fetchall():
            doc = json.loads(text)
            if isinstance(doc.get("properties"), dict):
                doc["properties"].pop("updated", None)
            items[i] = _python_stream(doc)
        audit = sorted(st.sql("SELECT id, paths FROM audit WHERE operation = 'update'").fetchall())
        out.append((res.changed, res.failed, items, audit))
    out.append(kernel_files)
    return out


@pytest.mark.parametrize(
    "sets",
    [
        ["properties.platform='landsat-8'"],
        ["properties.n=properties.n + 0"],
        ["properties.newkey=42", "properties.platform=upper(properties.platform)"],
        ["properties.platform=NULL"],
        ["properties.nested={'a': [1, 2.5], 'b': 'é\"'}"],
        ["assets.data.title='T'"],
        ["assets.thumb.href='x'"],
        ["properties.x=1", "properties.x=2"],
    ],
)
def test_update_through_the_kernel_matches_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sets: list[str]
) -> None:
    fast, slow, kernel_files = _update_both(tmp_path, sets, monkeypatch)
    assert fast == slow
    assert kernel_files[1] == 0
    if sets not in (["assets.thumb.href='x'"], ["properties.x=1", "properties.x=2"]):
        assert kernel_files[0] >= 1  # the file of ordinary items went through the kernel


def test_patch_items_keeps_untouched_bytes() -> None:
    text = b'{"id":"a", "properties":{"datetime":"2021-01-01T00:00:00.1234567Z","v":1.50},"x":[1.0]}'
    offsets = np.array([0, len(text)], np.int32).tobytes()
    status, moved, _toff, texts, _coff, _canon = kernel.patch_items(
        offsets, text, (("properties", "p"),), [['"new"']], '"2026-01-01T00:00:00Z"'
    )
    assert bytes(status) == b"\x01" and np.frombuffer(moved, np.uint32)[0] == (1 | 1 << 31)
    assert bytes(texts) == (
        b'{"id":"a", "properties":{"datetime":"2021-01-01T00:00:00.1234567Z","v":1.50,"p":"new",'
        b'"updated":"2026-01-01T00:00:00Z"},"x":[1.0]}'
    )


def test_patch_items_leaves_an_item_alone_where_a_value_is_none() -> None:
    a = b'{"id":"a","assets":{"B04":{"href":"x"}},"properties":{}}'
    b = b'{"id":"b","assets":{"B05":{"href":"y"}},"properties":{}}'
    offsets = np.array([0, len(a), len(a) + len(b)], np.int32).tobytes()
    paths = (("assets", "B04", "dgeo:cid"), ("assets", "B05", "dgeo:cid"))
    status, moved, _toff, texts, _coff, _canon = kernel.patch_items(
        offsets, a + b, paths, [['"Qa"', None], [None, '"Qb"']], None
    )
    assert bytes(status) == b"\x01\x01" and list(np.frombuffer(moved, np.uint32)) == [1, 2]
    assert bytes(texts) == (
        b'{"id":"a","assets":{"B04":{"href":"x","dgeo:cid":"Qa"}},"properties":{}}'
        b'{"id":"b","assets":{"B05":{"href":"y","dgeo:cid":"Qb"}},"properties":{}}'
    )
    status, *_ = kernel.patch_items(offsets, a + b, paths, [[None, None], [None, None]], None)
    assert bytes(status) == b"\x00\x00"


# ---- STAC API pages read by the kernel


def test_api_pages_through_the_kernel_match_the_decoded_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from stacbatch.sources import PagesUnit

    feats: list[Any] = [json.loads(line) for line in _corpus_lines()[:40]]
    feats += [{"type": "Feature", "collection": "c", "geometry": None, "properties": {}}, 7]  # errors
    feats.append(_item(id="spaces", properties={"datetime": "2020-01-01T00:00:00Z", "t": 'a  b\t\\n " c'}))
    page = json.dumps({"type": "FeatureCollection", "features": feats, "links": []}, indent=2).encode()
    keep = tuple(i for i in range(len(feats)) if i % 3)

    def run(k: tuple[int, ...] | None) -> tuple[Any, ...]:
        res = _parse.parse_unit(PagesUnit("u", [("p1", page, k)]), 50_000)
        rows = [r for b in res.batches for r in b.to_pylist()]
        texts = [r.pop("item") for r in rows]
        return rows, [_python_stream(json.loads(t)) for t in texts], res.failures, res.read, texts

    for k in (None, keep):
        fast = run(k)
        with monkeypatch.context() as m:
            m.setattr(_scan, "page_features", lambda _page: None)
            slow = run(k)
        assert fast[:4] == slow[:4]
        assert all(b"\n" not in t.encode() for t in fast[4])  # one line each: NDJSON emit stays valid
    assert kernel.page_features(b'{"features": 5}') is None
    assert kernel.page_features(b'{"links": []}') is None
    assert kernel.page_features(b'{"features": []}') == (b"", 0)


def test_text_hashes_match_content_hash_text() -> None:
    import pyarrow as pa

    texts = [line.decode() for line in _corpus_lines()[:200]]
    texts += ['{"b": 1, "a": 1.0}', '{"n": NaN, "i": 1e400}', "[]", '"caf\u00e9"', '{"big": 123456789012345678901234}']
    want = [_canonical.content_hash_text(t) for t in texts]
    for arr in (pa.array(texts, pa.string()), pa.array(texts, pa.large_string())):
        assert _scan.text_hashes(arr).to_pylist() == want
        assert _scan.text_hashes(arr.slice(3, 50)).to_pylist() == want[3:53]
    # a text the kernel does not take goes the Python way, which says why
    with pytest.raises(ValueError):
        _scan.text_hashes(pa.array(['{"a": 1}', '{"a":'], pa.string()))
    assert _scan.text_hashes(pa.array(['{"a": 1}', None], pa.string())) is None


def test_page_index_gives_what_paging_needs_without_decoding_items() -> None:
    feats: list[Any] = [json.loads(line) for line in _corpus_lines()[:30]]
    feats.append(
        _item(id='caf\u00e9 \\ "q"', properties={"start_datetime": "2020-01-01T00:00:00Z", "end_datetime": None})
    )
    feats.append({"type": "Feature", "id": "np", "properties": None})
    feats.append({"type": "Feature"})
    doc = {"type": "FeatureCollection", "features": feats, "links": [{"rel": "next", "href": "n"}], "numberMatched": 9}
    for indent in (None, 2):
        page = json.dumps(doc, indent=indent).encode()
        found = kernel.page_index(page)
        assert found is not None
        head, rows = found
        assert json.loads(head) == {**doc, "features": []}
        want = []
        for f in feats:
            props = f.get("properties") if isinstance(f.get("properties"), dict) else {}
            want.append(
                (f.get("id"), *(props.get(k) for k in ("datetime", "start_datetime", "end_datetime")))
                if "id" in f
                else (None, None, None, None)
            )
        # values as JSON texts: None when absent, b"null" for null
        assert [tuple(None if t is None else json.loads(t) for t in row) for row in rows] == want
        assert rows[-3][3] == b"null" and rows[-1] == (None, None, None, None)
    # not taken: the caller decodes the page whole
    for page in (
        b'{"features": [1]}',
        b'{"links": []}',
        b'{"features": {}}',
        b'{"features":[{"id":1,"properties":5}]}',
    ):
        assert kernel.page_index(page) is None
    assert kernel.page_index(b'{"features": [], "x": 1}') == (b'{"features": [], "x": 1}', [])


@pytest.mark.parametrize("kernel_on", [True, False])
@pytest.mark.parametrize("value", [b"NaN", b"1e400", b"-Infinity", b"Infinity", b"-1e999"])
def test_non_finite_numbers_fail_their_item(monkeypatch: pytest.MonkeyPatch, kernel_on: bool, value: bytes) -> None:
    """JSON has no NaN or infinities (orjson refuses them on input and would write null): the item fails, naming
    the field, and the other items of the block are staged. 1e-999 is finite (0): it is kept byte for byte."""
    bad = b'{"type":"Feature","id":"n","collection":"c","geometry":null,"properties":{"a":[1,%s]}}' % value
    tiny = b'{"type":"Feature","id":"t","collection":"c","geometry":null,"properties":{"a":1e-999}}'
    monkeypatch.setattr(_scan, "AVAILABLE", kernel_on)
    res = _parse.parse_unit(LinesUnit("s", 1, b"\n".join([bad, tiny])), 10)
    assert [r["item"] for b in res.batches for r in b.to_pylist()] == [tiny.decode()]
    (failure,) = res.failures
    assert failure["id"] == "n" and failure["field"] == "properties.a[1]" and failure["line"] == 1
    assert "not a finite JSON number" in failure["reason"]


def test_scan_lines_hands_its_buffers_over_without_copies() -> None:
    """The kernel's output buffers are read-only buffer objects that own their memory, valid after the call."""
    line = b'{"type":"Feature","id":"a","geometry":null,"properties":{"datetime":null},"links":[]}\n'
    out = kernel.scan_lines(line * 3, "dflt")
    item_off, item = out[12], out[13]
    assert isinstance(item, kernel.Block) and len(item) == 3 * (len(line) - 1)
    view = memoryview(item)
    assert view.readonly and bytes(view[: len(line) - 1]) == line[:-1]
    assert np.frombuffer(item_off, np.int32).tolist() == [k * (len(line) - 1) for k in range(4)]
    del out, item_off
    assert bytes(item).count(b'"id":"a"') == 3  # still valid once the tuple is gone


def test_scan_block_reads_a_view_of_a_larger_buffer() -> None:
    lines = [line + b"\n" for line in _corpus_lines()[:20]]
    data = b"".join(lines)
    cut = len(lines[0]) + len(lines[1])
    whole = _scan.scan_block(data[cut:])
    view = _scan.scan_block(memoryview(data)[cut:])
    assert view.batch is not None and whole.batch is not None
    assert view.batch.equals(whole.batch) and view.newlines == whole.newlines == 18


def test_a_large_block_freed_is_kept_for_the_next_large_buffer_and_can_be_dropped() -> None:
    import gc

    n = 1_200_000  # 8 bytes a hash: a 9.6 MB block, over the 8 MB a block needs to be kept
    offsets = np.zeros(n + 1, np.int32)
    kernel.drop_spare()
    first = kernel.hash_strings(offsets, b"")
    expected = bytes(first)
    del first
    gc.collect()
    again = kernel.hash_strings(offsets, b"")  # takes the kept block (its pages are faulted in already)
    assert bytes(again) == expected  # whatever the block held before is overwritten
    assert kernel.drop_spare() == 0
    del again
    assert kernel.drop_spare() >= n * 8  # kept when freed, then dropped
    assert kernel.drop_spare() == 0
    kept = kernel.hash_strings(offsets, b"")
    del kept
    bigger = kernel.hash_strings(np.zeros(3 * n + 1, np.int32), b"")  # the kept block, grown
    assert bytes(bigger) == expected * 3
    del bigger
    assert kernel.drop_spare() >= 3 * n * 8
    small = kernel.hash_strings(np.zeros(11, np.int32), b"")
    del small
    assert kernel.drop_spare() == 0  # small blocks are freed as they go


def test_threads_canonicalise_at_once() -> None:
    """The readers sort object keys without the GIL: threads of one process sorting at once must not mix their
    streams (the sort's base pointer is per thread)."""
    import threading

    def texts(seed: int) -> tuple[np.ndarray, bytes]:
        docs = [
            orjson.dumps({f"k{(i * 7919 + seed) % 997}": i, **{f"z{(j * seed) % 89}": j for j in range(40)}})
            for i in range(1500)
        ]
        off = np.zeros(len(docs) + 1, np.int64)  # (large_string offsets)
        off[1:] = np.cumsum([len(d) for d in docs])
        return off, b"".join(docs)

    inputs = [texts(seed) for seed in (3, 5, 7, 11)]
    want = [[bytes(b) for b in kernel.canonical_texts(off, data)] for off, data in inputs]
    bad: list[int] = []

    def work(n: int) -> None:
        for _ in range(15):
            if [bytes(b) for b in kernel.canonical_texts(*inputs[n])] != want[n]:
                bad.append(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad
