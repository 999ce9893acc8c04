"""The C kernel's JSON entry points on broken bytes, each beside its pure-Python twin (issue 20): real items with a few
bytes cut, replaced, inserted or dropped, random bytes and JSON-like text, for ``canonical``, ``canonical_texts``,
``hash_strings``, ``scan_lines``, ``patch_items``, ``page_index`` and ``page_features``. Never a crash (``make fuzz``
runs this file under ASan and UBSan); what the kernel takes equals what the twin gives; what it refuses, it refuses
cleanly: a ValueError, or the row handed back to the Python path.

The other entry points are fuzzed where their twins live (``test_kernel_props.py``, ``test_asset_fields.py``,
``test_pages.py``, ``test_wkt.py``, ``test_assemble.py``); the first tests here check that every entry point the
stub ``_kernel.pyi`` lists is called by a file ``make fuzz`` runs."""

from __future__ import annotations

import ast
import json
import os
import re
from typing import Any

import numpy as np
import orjson
import pytest
from conftest import ROOT, corpus_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stacbatch.api._stac import indexed_page
from stacbatch.edit import _rewrite
from stacbatch.engine import _json
from stacbatch.kernel import _canonical, _scan
from stacbatch.sources import LinesUnit, PagesUnit
from stacbatch.stage import _parse

if os.environ.get("STACBATCH_REQUIRE_KERNEL") == "1":  # `make test`: a kernel that failed to build is a failure
    import stacbatch.kernel._kernel as kernel
else:
    kernel = pytest.importorskip("stacbatch.kernel._kernel")

_LINES = [line for f in corpus_files("items") for line in f.read_bytes().split(b"\n") if line.strip()]
needs_corpus = pytest.mark.skipif(not _LINES, reason="needs the shared corpus (../shared/corpus/real/items)")

#: bytes that break JSON where they land (quotes, brackets, escapes, digits, control and non-ASCII bytes)
_STRUCTURAL = b'{}[]":,\\ 0123456789-.eE+tfnu\x00\x1f\x7f\x80\xbf\xc3\xed\xf0\xff'
_BYTES = st.integers(0, 255) | st.sampled_from(list(_STRUCTURAL))
#: (which line, where, how: 0 cut, 1 replace, 2 insert, 3 drop, the byte)
_MUTATIONS = st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 3), _BYTES), min_size=1, max_size=4
)
_JSON_LIKE = st.text(alphabet='{}[]":,\\ 01-.eE+tfnrulsaNIy\t\n', max_size=60).map(str.encode)


def _mutate(line: bytes, at: int, op: int, byte: int) -> bytes:
    at %= len(line) + 1
    if op == 0:
        return line[:at]
    if op == 1:
        return line[:at] + bytes([byte]) + line[at + 1 :]
    if op == 2:
        return line[:at] + bytes([byte]) + line[at:]
    return line[:at] + line[at + 1 :]


def _mutated(muts: list[tuple[int, int, int, int]]) -> bytes:
    """One real item with every mutation applied to it (the first picks the item)."""
    text = _LINES[muts[0][0] % len(_LINES)]
    for _, at, op, byte in muts:
        text = _mutate(text, at, op, byte)
    return text


def _python_stream(value: Any) -> bytes:
    out = bytearray()
    _canonical._stream(value, out)
    return bytes(out)


def _offsets(texts: list[bytes], dtype: type, start: int = 0) -> np.ndarray:
    off = np.zeros(len(texts) + 1, dtype)
    off[0] = start
    off[1:] = start + np.cumsum([len(t) for t in texts])
    return off


def _unaligned(array: np.ndarray) -> memoryview:
    """The array's bytes at an odd address (a bytes object sliced anywhere): the kernel must not assume alignment."""
    return memoryview(b"\0" + array.tobytes())[1:]


# ---- every entry point of the stub is fuzzed under `make fuzz`

_STUB = ROOT / "stacbatch" / "kernel" / "_kernel.pyi"
_SANITIZED = ROOT / "tests" / "fuzz" / "sanitized.sh"


def _stub_names() -> tuple[set[str], set[str]]:
    """The functions and the other names (classes, constants) ``_kernel.pyi`` declares."""
    tree = ast.parse(_STUB.read_text())
    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    others = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    others |= {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    return functions, others


def test_the_stub_is_the_list_of_entry_points() -> None:
    functions, others = _stub_names()
    public = {n for n in dir(kernel) if not n.startswith("_")}
    assert public == functions | others
    assert {n for n in public if callable(getattr(kernel, n)) and n != "Block"} == functions


def test_every_entry_point_is_called_by_a_test_that_make_fuzz_runs() -> None:
    files = re.findall(r'"\$ROOT"/(tests/test_\w+\.py)', _SANITIZED.read_text())
    assert "tests/test_kernel_fuzz.py" in files
    text = "\n".join((ROOT / f).read_text() for f in files)
    functions, _ = _stub_names()
    missing = sorted(n for n in functions if not re.search(rf"\b_?kernel\.{n}\(", text))
    assert not missing, f"entry points no test under `make fuzz` calls: {missing}"


# ---- canonical: stdlib rules by default, orjson's with strict=True; the twin is _stream of the decoded value


def _twin_stream(text: bytes, strict: bool) -> bytes | None:
    """The canonical stream the Python path gives for a text, or None where it refuses it."""
    if strict:
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError:
            return None
    try:
        value = json.loads(text)  # integers exact, as the kernel keeps them
    except (ValueError, RecursionError):
        return None
    return _python_stream(value)


def _stdlib_only(text: bytes) -> bool:
    """What ``json.loads(bytes)`` reads and the kernel refuses by design: a UTF-8 BOM or UTF-16/32, which the
    stdlib detects from the first bytes (orjson refuses them too)."""
    return json.detect_encoding(text) != "utf-8"


def _check_canonical(text: bytes) -> None:
    for strict in (False, True):
        want = _twin_stream(text, strict)
        try:
            got: bytes | None = kernel.canonical(text, strict=strict)
        except ValueError as err:
            assert re.fullmatch(r".+ at byte \d+", str(err)), err
            got = None
        if got is None:
            assert want is None or _stdlib_only(text), (strict, text[:200])
        else:
            assert got == want, (strict, text[:200])


@needs_corpus
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_MUTATIONS)
def test_canonical_of_mutated_real_items(muts: list[tuple[int, int, int, int]]) -> None:
    _check_canonical(_mutated(muts))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80) | _JSON_LIKE)
def test_canonical_of_random_bytes(text: bytes) -> None:
    _check_canonical(text)


def test_canonical_reads_lone_surrogates_as_the_stdlib_reads_bytes() -> None:
    """Not strict, a surrogate written as UTF-8 is read as ``json.loads(bytes)`` reads it ('surrogatepass'), so
    ``canonical_text`` of a str holding one (encoded 'surrogatepass') agrees with the pure-Python path."""
    for text in (
        b'"\xed\xa0\x80"',
        b'{"\xed\xb0\x80":"a\xed\xa0\xbd\xed\xb8\x80"}',
        '["\ud800\\udc00"]'.encode("utf-8", "surrogatepass"),
    ):
        assert kernel.canonical(text) == _python_stream(json.loads(text))
        with pytest.raises(ValueError):
            kernel.canonical(text, strict=True)
    for bad in (b'"\xed\xa0"', b'"\xed\xc0\x80"', b'"\xed\x9f"'):
        with pytest.raises(ValueError):
            kernel.canonical(bad)


# ---- canonical_texts: a column of texts; ok 0 sends a text to the Python path (content_hash_text)


def _check_canonical_texts(texts: list[bytes], start: int, unaligned: bool) -> None:
    data = b"\xff" * start + b"".join(texts)
    off = _offsets(texts, np.int64, start)
    ok_b, ends_b, streams_b = kernel.canonical_texts(_unaligned(off) if unaligned else off, data)
    ok = np.frombuffer(ok_b, np.uint8)
    ends = np.frombuffer(ends_b, np.uint32)
    streams = bytes(streams_b)
    assert len(ok) == len(texts) and len(ends) == len(texts) + 1 and ends[0] == 0 and ends[-1] == len(streams)
    assert set(ok.tolist()) <= {0, 1} and (np.diff(ends.astype(np.int64)) >= 0).all()
    for i, text in enumerate(texts):
        want = _twin_stream(text, strict=False)
        got = streams[ends[i] : ends[i + 1]]
        if ok[i]:
            assert got == want, text[:200]
        else:
            assert got == b"" and (want is None or _stdlib_only(text)), text[:200]


@needs_corpus
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_MUTATIONS, min_size=1, max_size=4), st.integers(0, 3), st.booleans())
def test_canonical_texts_of_mutated_real_items(
    muts: list[list[tuple[int, int, int, int]]], start: int, unaligned: bool
) -> None:
    _check_canonical_texts([_mutated(m) for m in muts], start, unaligned)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40) | _JSON_LIKE, max_size=6), st.integers(0, 3), st.booleans())
def test_canonical_texts_of_random_bytes(texts: list[bytes], start: int, unaligned: bool) -> None:
    _check_canonical_texts(texts, start, unaligned)


# ---- hash_strings: FNV-1a with a splitmix64 finish, over an Arrow string column (int32 offsets)

_M64 = (1 << 64) - 1


def _twin_hash(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for c in data:
        h = ((h ^ c) * 0x100000001B3) & _M64
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & _M64
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & _M64
    return h ^ (h >> 31)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=8), st.integers(0, 3), st.booleans())
def test_hash_strings_gives_what_its_definition_gives(strings: list[bytes], start: int, unaligned: bool) -> None:
    off = _offsets(strings, np.int32, start)
    got = kernel.hash_strings(_unaligned(off) if unaligned else off, b"\0" * start + b"".join(strings))
    assert np.frombuffer(got, np.uint64).tolist() == [_twin_hash(s) for s in strings]


# ---- bad offsets are refused whole, by every entry point that takes a column


def test_bad_offsets_are_value_errors() -> None:
    data = b'{"properties":{},"assets":{}}'
    n = len(data)
    for bad in ([0, n + 1], [-1, 5], [5, 4], [0, 5, 3], [0, 5, n, n + 1]):
        for name, width in (("hash_strings", np.int32), ("canonical_texts", np.int64), ("wkt_geometries", np.int64)):
            with pytest.raises(ValueError, match="offsets out of range"):
                getattr(kernel, name)(np.array(bad, width), data)
        with pytest.raises(ValueError, match="offsets out of range"):
            kernel.patch_items(np.array(bad, np.int32).tobytes(), data, (), [], None)
    for name in ("hash_strings", "canonical_texts", "wkt_geometries", "property_values", "asset_fields"):
        with pytest.raises(ValueError, match="at least one"):
            getattr(kernel, name)(b"", data)
    with pytest.raises(ValueError, match="at least one"):
        kernel.patch_items(b"", data, (), [], None)


def test_offsets_and_rows_at_odd_addresses_read_the_same() -> None:
    """Offsets and rows come as any bytes-like object, so maybe unaligned: read the same (UBSan checks the loads)."""
    wkt = [b"POINT (1 2)", b"LINESTRING (0 0, 1.5 1)", b"junk", b""]
    off = _offsets(wkt, np.int64)
    data = b"".join(wkt)
    want = [bytes(b) for b in kernel.wkt_geometries(off, data)]
    assert [bytes(b) for b in kernel.wkt_geometries(_unaligned(off), data)] == want and want[0] == b"\1\1\0\0"
    page = b"".join(len(v).to_bytes(4, "little") + v for v in (b"a", b"bc", b"def"))
    rows = np.array([0, 2], np.int64)
    assert [bytes(b) for b in kernel.plain_take(page, _unaligned(rows))] == [
        np.array([0, 1, 4], np.int64).tobytes(),
        b"adef",
    ]


# ---- scan_lines against the Python path (BatchBuilder), through parse_unit with and without the kernel


def _both_paths(data: bytes) -> tuple[Any, Any]:
    def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        res = _parse.parse_unit(LinesUnit("src.ndjson", 1, data), 50_000)
        return [r for b in res.batches for r in b.to_pylist()], res.failures, res.read

    fast = run()
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_scan, "AVAILABLE", False)
        slow = run()
    return fast, slow


def _check_scan(data: bytes) -> None:
    """scan_lines' own answer (every line taken or handed back, once; a taken line is one orjson reads), then the
    stage rows and failures of the block with and without the kernel."""
    out = kernel.scan_lines(data, "dflt")
    taken, count = out[0], out[18]
    lines = data.split(b"\n")
    assert count == len(lines) - (1 if data.endswith(b"\n") or not data else 0)
    took = np.frombuffer(out[16], np.int64).tolist()
    rest = np.frombuffer(out[17], np.int64).reshape(-1, 3).tolist()
    assert len(took) == taken and took == sorted(took)
    starts = np.cumsum([0] + [len(x) + 1 for x in lines])
    for idx, a, b in rest:
        assert (a, b) == (starts[idx], starts[idx] + len(lines[idx]))
    solid = [i for i in range(count) if lines[i].strip(b" \t\r\n")]
    assert sorted(took + [r[0] for r in rest]) == solid
    for i in took:
        orjson.loads(lines[i])
    fast, slow = _both_paths(data)
    assert fast == slow


@needs_corpus
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), _MUTATIONS), min_size=1, max_size=4), st.booleans())
def test_scan_lines_on_mutated_real_items(lines: list[tuple[bool, list[tuple[int, int, int, int]]]], end: bool) -> None:
    block = b"\n".join(_mutated(m) if broken else _LINES[m[0][0] % len(_LINES)] for broken, m in lines)
    _check_scan(block + (b"\n" if end else b""))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40) | _JSON_LIKE, max_size=5))
def test_scan_lines_on_random_bytes(lines: list[bytes]) -> None:
    _check_scan(b"\n".join(lines))


# ---- patch_items (`update --set`) against the Python update path: _rewrite._apply on the decoded item

#: disjoint paths (as the caller sends them): existing members, new members, a deeper parent, the top level
_PATHS = [
    ("properties", "platform"),
    ("properties", "datetime"),
    ("properties", "fuzz"),
    ("properties", "eo:cloud_cover"),
    ("assets", "thumbnail", "title"),
    ("assets", "thumbnail", "href"),
    ("assets", "visual", "dgeo:cid"),
    ("collection",),
]
_STAMP = "2026-12-07T00:00:00.000000Z"
_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["sentinel-2a", "2020-01-01T00:00:00Z"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
#: value texts: mostly what DuckDB writes (valid JSON), now and then what the Python path would refuse
# None: the step leaves that item alone (an extension's field an item does not get)
_VALUE_TEXTS = (
    _VALUES.map(lambda v: json.dumps(v, ensure_ascii=False))
    | st.sampled_from(["", "tru", "NaN", "1e400", '"\\ud800"', "[1,]", '{"a":1', "1 2"])
    | st.none()
)


def _twin_patch(text: bytes, paths: list[tuple[str, ...]], values: list[str], stamp: bool) -> tuple[int, int, bytes]:
    """(status, moved mask, canonical stream of the new item) as the Python update path gives them: status 0
    unchanged, 1 changed; 2 where it raises or fails the item (the kernel must leave those to it)."""
    try:
        doc = _json.loads(text)
    except ValueError:
        return 2, 0, b""
    if not isinstance(doc, dict):
        return 0, 0, b""
    steps = [("set", p, None, None) for p in paths]
    before = [_rewrite._get(doc, p) for p in paths]
    try:
        _rewrite._apply(doc, steps, values, {}, False)
    except (_rewrite._NotAnObject, ValueError):
        return 2, 0, b""
    mask = sum(1 << k for k, p in enumerate(paths) if not _rewrite._same(before[k], _rewrite._get(doc, p)))
    if not mask:
        return 0, 0, b""
    props = doc.get("properties")
    if stamp and isinstance(props, dict):
        if props.get("updated") != _STAMP:
            mask |= 1 << 31
        props["updated"] = _STAMP
    try:
        _json.dumps(doc)
    except ValueError:  # a value JSON cannot carry: the Python path fails the item
        return 2, 0, b""
    return 1, mask, _python_stream(doc)


def _check_patch(texts: list[bytes], paths: list[tuple[str, ...]], values: list[list[str]], stamp: bool) -> None:
    off = _offsets(texts, np.int32)
    res = kernel.patch_items(
        _unaligned(off), b"".join(texts), tuple(paths), values, json.dumps(_STAMP) if stamp else None
    )
    status = np.frombuffer(res[0], np.uint8).tolist()
    moved = np.frombuffer(res[1], np.uint32).tolist()
    toff, coff = np.frombuffer(res[2], np.int32), np.frombuffer(res[4], np.int32)
    new_texts, canon = bytes(res[3]), bytes(res[5])
    assert len(status) == len(moved) == len(texts) and set(status) <= {0, 1, 2}
    assert len(toff) == len(coff) == status.count(1) + 1 and toff[-1] == len(new_texts) and coff[-1] == len(canon)
    j = 0
    for i, text in enumerate(texts):
        want = _twin_patch(text, paths, [v[i] for v in values], stamp)
        if status[i] == 2:  # left to Python: always allowed
            assert moved[i] == 0
            continue
        assert (status[i], moved[i]) == want[:2], (text[:200], [v[i] for v in values])
        if status[i] == 1:
            new, stream = new_texts[toff[j] : toff[j + 1]], canon[coff[j] : coff[j + 1]]
            assert stream == want[2] == _python_stream(json.loads(new)), text[:200]
            j += 1


def _same_values(origins: list[bytes], paths: list[tuple[str, ...]], values: list[list[str]]) -> list[list[str]]:
    """Per path, each item's value there as its origin (the item before mutation) holds it, where it has one: the
    steps then move nothing, and the rest of the (maybe broken) text decides between unchanged and Python."""
    out = []
    for k, path in enumerate(paths):
        column = []
        for i, origin in enumerate(origins):
            try:
                value = _rewrite._get(orjson.loads(origin), path)
            except orjson.JSONDecodeError:
                value = _rewrite._ABSENT
            column.append(values[k][i] if value is _rewrite._ABSENT else json.dumps(value, ensure_ascii=False))
        out.append(column)
    return out


_PATCH_ARGS = st.lists(st.sampled_from(_PATHS), min_size=1, max_size=4, unique=True).flatmap(
    lambda paths: st.tuples(
        st.just(paths),
        st.lists(st.lists(_VALUE_TEXTS, min_size=4, max_size=4), min_size=len(paths), max_size=len(paths)),
    )
)


@needs_corpus
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.booleans(), _MUTATIONS), min_size=4, max_size=4),
    _PATCH_ARGS,
    st.booleans(),
)
def test_patch_items_on_mutated_real_items(
    items: list[tuple[bool, list[tuple[int, int, int, int]]]],
    args: tuple[list[tuple[str, ...]], list[list[str]]],
    stamp: bool,
) -> None:
    texts = [_mutated(m) if broken else _LINES[m[0][0] % len(_LINES)] for broken, m in items]
    _check_patch(texts, *args, stamp)
    paths, values = args
    _check_patch(texts, paths, _same_values([_LINES[m[0][0] % len(_LINES)] for _, m in items], paths, values), stamp)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40) | _JSON_LIKE, min_size=4, max_size=4), _PATCH_ARGS, st.booleans())
def test_patch_items_on_random_bytes(
    texts: list[bytes], args: tuple[list[tuple[str, ...]], list[list[str]]], stamp: bool
) -> None:
    _check_patch(texts, *args, stamp)
    _check_patch(texts, args[0], _same_values(texts, *args), stamp)


def test_patch_items_leaves_what_python_would_not_read_to_python() -> None:
    """A text orjson would not read goes to Python, changed or not: the kernel does not vouch for it."""
    good = b'{"id":"a","properties":{"p":1}}'
    texts = [
        good,
        b'{"id":"a","properties":{"p":1},"x":NaN}',  # unchanged, but not JSON orjson reads
        b'{"id":"a","properties":{"p":1},"x":[1,}',  # unchanged, broken after the path
        b'{"id":"a","properties":{"p":2},"x":"\\ud800"}',  # changed, with a lone surrogate
        b'{"id":"a","properties":{"p":2},"x":1e400}',  # changed, with a number infinite as a double
    ]
    res = kernel.patch_items(
        _offsets(texts, np.int32).tobytes(), b"".join(texts), (("properties", "p"),), [["1"] * len(texts)], None
    )
    assert bytes(res[0]) == b"\x00\x02\x02\x02\x02"
    res = kernel.patch_items(_offsets([good], np.int32).tobytes(), good, (("properties", "p"),), [["NaN"]], None)
    assert bytes(res[0]) == b"\x02"  # a value Python would refuse to write


# ---- STAC API pages: page_index and page_features against decoding the page whole (_json.loads)

_PAGE_FEATURES = [
    {"type": "Feature", "id": f"i{i}", "properties": {"datetime": f"2020-01-0{i + 1}T00:00:00Z"}, "geometry": None}
    for i in range(3)
]
_PAGE = json.dumps(
    {"type": "FeatureCollection", "features": _PAGE_FEATURES, "links": [{"rel": "next", "href": "http://h/n?t=é"}]},
    indent=1,
).encode()


def _check_page(page: bytes) -> None:
    """A page orjson refuses is refused by both readers (None: the caller decodes it, and a page that is not JSON is
    a broken response); a page they take gives what decoding it gives."""
    try:
        doc = orjson.loads(page)
    except orjson.JSONDecodeError:
        doc = None
    found = kernel.page_index(page)
    feats = kernel.page_features(page)
    if doc is None or not isinstance(doc, dict):
        assert found is None and feats is None, page[:200]
        return
    if found is not None:
        head, rows = found
        assert orjson.loads(head) == {**doc, "features": []}
        assert len(rows) == len(doc["features"])
        for row, f in zip(rows, doc["features"], strict=True):  # (None: absent; b"null": null)
            props = f.get("properties") or {}
            want = [f.get("id"), *(props.get(k) for k in ("datetime", "start_datetime", "end_datetime"))]
            assert [None if t is None else orjson.loads(t) for t in row] == want
    if feats is not None:
        block, count = feats
        lines = block.splitlines()
        assert count == len(lines) == len(doc["features"])
        assert [orjson.loads(line) for line in lines] == doc["features"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 3), _BYTES), min_size=1, max_size=3))
def test_mutated_api_pages(muts: list[tuple[int, int, int]]) -> None:
    page = _PAGE
    for at, op, byte in muts:
        page = _mutate(page, at, op, byte)
    _check_page(page)


@needs_corpus
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(0, 10**6), min_size=1, max_size=4),
    st.lists(st.tuples(st.integers(0, 10**7), st.integers(0, 3), _BYTES), max_size=3),
    st.sampled_from([None, 1]),
)
def test_mutated_pages_of_real_items(picks: list[int], muts: list[tuple[int, int, int]], indent: int | None) -> None:
    feats = [json.loads(_LINES[i % len(_LINES)]) for i in picks]
    page = json.dumps({"type": "FeatureCollection", "features": feats, "links": []}, indent=indent).encode()
    for at, op, byte in muts:
        page = _mutate(page, at, op, byte)
    _check_page(page)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet='{}[]":,\\ 01-.eEtfnrulsa', max_size=80))
def test_random_json_like_pages(text: str) -> None:
    _check_page(('{"features":' + text + "}").encode())
    _check_page(text.encode())


def _page_of(*features: bytes) -> bytes:
    return b'{"type":"FeatureCollection","links":[],"features":[' + b",".join(features) + b"]}"


_GOOD = [
    b'{"type":"Feature","id":"%d","properties":{"datetime":"2020-01-01T00:00:00Z"},"geometry":null}' % i
    for i in range(3)
]


@pytest.mark.parametrize("kernel_on", [True, False])
def test_a_page_that_is_not_json_is_refused_whole_and_a_bad_item_alone(
    monkeypatch: pytest.MonkeyPatch, kernel_on: bool
) -> None:
    """A STAC API loader: a page that is not valid JSON as a whole is a broken response (the fetcher asks for it
    again: ``_http`` retries a body that does not decode), even when the damage is inside one feature; a valid page
    with one bad item stages the others and fails that one alone. The same with the kernel and without."""
    if not kernel_on:
        monkeypatch.setattr(_scan, "_kernel", None)
    broken = _page_of(_GOOD[0], b'{"type":"Feature","id":"x","properties":{"a":[1,}},"geometry":null}', _GOOD[1])
    assert _scan.page_index(broken) is None and _scan.page_features(broken) is None
    with pytest.raises(ValueError):
        indexed_page(broken)
    # valid JSON, bad items: not an object, no id, NaN (the stdlib reads it: the page is decoded, the item fails)
    nan = b'{"type":"Feature","id":"n","properties":{"datetime":"2020-01-01T00:00:00Z","x":NaN},"geometry":null}'
    no_id = b'{"type":"Feature","geometry":null,"properties":{}}'
    for bad, index, lines in ((b"7", False, True), (no_id, True, True), (nan, False, False)):
        page = _page_of(_GOOD[0], bad, _GOOD[1], _GOOD[2])
        assert (_scan.page_index(page) is not None) == (kernel_on and index)
        assert (_scan.page_features(page) is not None) == (kernel_on and lines)
        doc = indexed_page(page)
        assert len(doc["features"]) == 4
        res = _parse.parse_unit(PagesUnit("u", [("p1", page, None)]), 50)
        assert [r["id"] for b in res.batches for r in b.to_pylist()] == ["0", "1", "2"]
        assert [f["source"] for f in res.failures] == ["p1#features[1]"] and res.read == 4
