"""_kernel.property_values (issue 19) against a pure-Python reference: the top-level properties members of each item
text, one entry per member, on every real item, on edge cases, on generated documents and on broken bytes. A row the
kernel takes must be exactly what decoding it gives; a row orjson cannot read must be listed unread."""

from __future__ import annotations

import calendar
import datetime
import json
import math
import os
import re
import struct
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pytest
from conftest import CORPUS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if os.environ.get("STACBATCH_REQUIRE_KERNEL") == "1":  # `make test`: a kernel that failed to build is a failure
    import stacbatch.kernel._kernel as kernel
else:
    kernel = pytest.importorskip("stacbatch.kernel._kernel")

#: key, kind, int64, float64 (as its 8 bytes: -0.0 is not 0.0), stamp, stamp_ok, text
Entry = tuple[bytes, int, int, bytes, int, int, bytes]

NULL, FALSE, TRUE, INT, FLOAT, BIGINT, STRING, ARRAY, OBJECT = range(9)
MAX_DEPTH = 512  # the kernel's nesting limit (orjson's is 1024): deeper rows are left to Python

# ---- the reference: orjson says whether a row is readable; the stdlib decoder, stepping member by member, gives
# each member's exact text (raw_decode returns where a value ends), so duplicates and literals are kept

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_RFC3339 = re.compile(
    rb"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    rb"(?:[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))?)?"
)
_EPOCH = datetime.date(1970, 1, 1).toordinal()


def _stamp(text: bytes) -> int | None:
    """Microseconds since the epoch for the RFC 3339 forms the kernel's parse_rfc3339 reads (naive = UTC; the
    fraction cut, not rounded, to microseconds), else None."""
    m = _RFC3339.fullmatch(text)
    if not m:
        return None
    y, mo, d = int(m[1]), int(m[2]), int(m[3])
    h, mi, se = (int(m[4]), int(m[5]), int(m[6])) if m[4] else (0, 0, 0)
    if y < 1 or not 1 <= mo <= 12 or not 1 <= d <= calendar.monthrange(y, mo)[1] or h > 23 or mi > 59 or se > 59:
        return None
    frac = int((m[7] or b"")[:6].ljust(6, b"0"))
    off = 0
    if m[8]:
        oh, om = int(m[9]), int(m[10])
        if oh > 23 or om > 59:
            return None
        off = (oh * 60 + om) * (-1 if m[8] == b"-" else 1)
    days = datetime.date(y, mo, d).toordinal() - _EPOCH
    return (days * 86400 + h * 3600 + mi * 60 + se - off * 60) * 1_000_000 + frac


def _f64(x: float) -> bytes:
    return struct.pack("<d", x)


def _ws(s: str, i: int) -> int:
    m = _WS.match(s, i)
    assert m
    return m.end()


def _members(s: str, i: int) -> list[tuple[str, int, int]]:
    """(key, start, end) of each member of the object at s[i] == '{', in document order."""
    out: list[tuple[str, int, int]] = []
    i = _ws(s, i + 1)
    if s[i] == "}":
        return out
    while True:
        key, i = _DECODER.raw_decode(s, i)
        i = _ws(s, i)
        assert s[i] == ":"
        start = _ws(s, i + 1)
        _, end = _DECODER.raw_decode(s, start)
        out.append((key, start, end))
        i = _ws(s, end)
        if s[i] == "}":
            return out
        assert s[i] == ","
        i = _ws(s, i + 1)


def _entry(key: str, raw: str) -> Entry | None:
    k = key.encode()
    c = raw[0]
    if c in "nft":
        return (k, {"n": NULL, "f": FALSE, "t": TRUE}[c], 0, _f64(0), 0, 0, b"")
    if c == '"':
        text = json.loads(raw).encode()
        stamp = _stamp(text) if len(text) >= 10 and text[4:5] == b"-" else None
        return (k, STRING, 0, _f64(0), stamp or 0, int(stamp is not None), text)
    if c in "[{":
        return (k, ARRAY if c == "[" else OBJECT, 0, _f64(0), 0, 0, raw.encode())
    if any(ch in raw for ch in ".eE"):
        x = float(raw)
        return None if math.isinf(x) else (k, FLOAT, 0, _f64(x), 0, 0, b"")
    n = int(raw)
    if -(2**63) <= n < 2**63:
        return (k, INT, n, _f64(float(n)), 0, 0, b"")
    try:
        return (k, BIGINT, 0, _f64(float(n)), 0, 0, raw.encode())
    except OverflowError:
        return None


def reference(text: bytes, member: str = "properties") -> list[Entry] | None:
    """The entries of one row (of its ``member`` object; "": the row is the object), or None when it cannot be
    read."""
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    s = text.decode()
    i = _ws(s, 0)
    if not member:
        props: int | None = i if s[i] == "{" else None
        if props is None:
            return None  # not an object: left to Python (which finds no members)
    elif s[i] != "{":
        return []
    else:
        props = None
    for key, start, _ in _members(s, i) if member else ():
        if key == member:  # the last wins
            props = start if s[start] == "{" else None
    if props is None:
        return []
    out = []
    for key, start, end in _members(s, props):
        e = _entry(key, s[start:end])
        if e is None:
            return None
        out.append(e)
    return out


# ---- the kernel's answer, checked for shape


def _offsets(texts: list[bytes]) -> np.ndarray:
    off = np.zeros(len(texts) + 1, np.int32)
    off[1:] = np.cumsum([len(t) for t in texts])
    return off


def kernel_rows(
    offsets: Any, data: bytes | Any, n: int, member: str = "properties"
) -> tuple[list[list[Entry]], list[int]]:
    """Per row its entries, and the unread rows; the layout of the 11 blocks checked on the way."""
    res = (
        kernel.property_values(offsets, data)
        if member == "properties"
        else kernel.property_values(offsets, data, member.encode())
    )
    assert len(res) == 11
    rows = np.frombuffer(res[0], np.int32)
    kinds = np.frombuffer(res[1], np.uint8)
    ints = np.frombuffer(res[2], np.int64)
    floats = np.frombuffer(res[3], np.float64)
    stamps = np.frombuffer(res[4], np.int64)
    ok = np.frombuffer(res[5], np.uint8)
    key_off = np.frombuffer(res[6], np.int32)
    keys = bytes(res[7])
    text_off = np.frombuffer(res[8], np.int32)
    texts = bytes(res[9])
    unread = np.frombuffer(res[10], np.int32).tolist()
    m = len(rows)
    assert len(kinds) == len(ints) == len(floats) == len(stamps) == len(ok) == m
    assert len(key_off) == len(text_off) == m + 1 and key_off[0] == 0 and text_off[0] == 0
    assert key_off[-1] == len(keys) and text_off[-1] == len(texts)
    assert (np.diff(key_off) >= 0).all() and (np.diff(text_off) >= 0).all() and (np.diff(rows) >= 0).all()
    assert unread == sorted(set(unread)) and all(0 <= r < n for r in unread)
    assert not set(unread) & set(rows.tolist()), "an unread row with entries"
    out: list[list[Entry]] = [[] for _ in range(n)]
    for j in range(m):
        assert 0 <= rows[j] < n and kinds[j] <= OBJECT and ok[j] <= 1
        out[rows[j]].append(
            (
                keys[key_off[j] : key_off[j + 1]],
                int(kinds[j]),
                int(ints[j]),
                floats[j].tobytes(),
                int(stamps[j]),
                int(ok[j]),
                texts[text_off[j] : text_off[j + 1]],
            )
        )
    return out, unread


def check(
    texts: list[bytes], *, limits: bool = False, member: str = "properties"
) -> tuple[list[list[Entry]], list[int]]:
    """The kernel agrees with the reference on every row (limits: a readable row may be left unread when it nests
    deeper than the kernel reads)."""
    got, unread = kernel_rows(_offsets(texts), b"".join(texts), len(texts), member)
    for i, text in enumerate(texts):
        want = reference(text, member)
        if i in unread:
            assert want is None or (limits and _depth(text) > MAX_DEPTH), (i, text[:200], want)
        else:
            assert want is not None, ("read a row orjson refuses", i, text[:200])
            assert got[i] == want, (i, text[:200])
    return got, unread


def _depth(text: bytes) -> int:
    """How deep a valid JSON text nests (counted, not recursed: the deep ones are the point)."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text.decode():
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def _corpus_lines() -> list[bytes]:
    if not CORPUS.is_dir():
        return []
    return [line for f in sorted(CORPUS.rglob("*.ndjson")) for line in f.read_bytes().split(b"\n") if line.strip()]


# ---- real items


def test_every_real_item() -> None:
    lines = _corpus_lines()
    if not lines:
        pytest.skip(f"needs the shared corpus: {CORPUS} is missing")
    got, unread = check(lines)
    assert not unread  # the corpus is valid JSON: nothing is left to Python
    assert sum(map(len, got)) > 5 * len(lines)
    stamped = [e for row in got for e in row if e[0] == b"datetime" and e[5]]
    assert len(stamped) > len(lines) // 2


@pytest.mark.parametrize("start,length", [(0, 1), (1, 7), (13, 200), (999, 1), (500, None), (0, 0)])
def test_chunk_slices(start: int, length: int | None) -> None:
    """Offsets as _scan.string_hashes passes them: sliced to the chunk's offset, into the whole data buffer."""
    lines = _corpus_lines()
    if not lines:
        pytest.skip(f"needs the shared corpus: {CORPUS} is missing")
    array = pa.array([line.decode() for line in lines], pa.string())
    chunk = array.slice(start, length)
    bufs = chunk.buffers()
    offsets = np.frombuffer(bufs[1], np.int32)[chunk.offset : chunk.offset + len(chunk) + 1]
    got, unread = kernel_rows(offsets, bufs[2] or b"", len(chunk))
    assert not unread
    assert got == [reference(line) for line in lines[start : start + len(chunk)]]


def test_empty_column_and_empty_strings() -> None:
    res = kernel.property_values(np.zeros(1, np.int32), b"")
    assert [len(b) for b in res] == [0, 0, 0, 0, 0, 0, 4, 0, 4, 0, 0]
    assert np.frombuffer(res[6], np.int32).tolist() == [0] and np.frombuffer(res[8], np.int32).tolist() == [0]
    chunk = pa.array(["", "", ""], pa.string())
    bufs = chunk.buffers()
    _, unread = kernel_rows(np.frombuffer(bufs[1], np.int32)[:4], bufs[2] or b"", 3)
    assert unread == [0, 1, 2]  # an empty text is no JSON value


def test_bad_offsets() -> None:
    data = b'{"properties":{}}'
    for off in ([0, 18], [-1, 5], [5, 4], [0, 5, 3]):
        with pytest.raises(ValueError):
            kernel.property_values(np.array(off, np.int32), data)
    with pytest.raises(ValueError):
        kernel.property_values(b"", data)
    # unaligned offsets (a bytes object sliced anywhere) read the same
    raw = memoryview(b"\0" + np.array([0, len(data)], np.int32).tobytes())[1:]
    assert kernel_rows(raw, data, 1) == ([[]], [])


# ---- hand-written edge cases


def _item(props: str) -> bytes:
    return ('{"id":"x","properties":' + props + ',"assets":{}}').encode()


EDGES: list[bytes] = [
    _item('{"a\\"b":1,"\\u00e9\\t":2,"\\ud83d\\ude00":3,"plain":4,"":5}'),
    _item('{"s":"x\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\\\\\\"","z":"\\u0000","u":"é€😀"}'),
    _item('{"a":1,"b":2,"a":3,"a":{"x":1}}'),
    _item("null"),
    _item("[1,2]"),
    _item('"text"'),
    _item("7"),
    b'{"id":"x"}',
    b'{"properties":{"a":1},"id":"x","properties":{"b":2}}',
    b'{"properties":{"a":1},"properties":null}',
    b'{"properties":{"a":1},"propert\\u0069es":{"c":3}}',
    b'{"properties":{"a":1},"nested":{"properties":{"b":2}}}',
    _item(
        '{"i0":-0,"f0":-0.0,"e":1e3,"E":1E3,"two":2.0,"max":9223372036854775807,"over":9223372036854775808,'
        '"min":-9223372036854775808,"under":-9223372036854775809,"u64":18446744073709551615,'
        '"huge":123456789012345678901234567890,"exp":1e308,"tiny":5e-324,"under0":1e-400,"z":0e99999999999999999999,'
        '"long":0.1000000000000000055511151231257827021181583404541015625,"r":123456789.123456789,'
        '"d17":0.30000000000000004,"neg":-1.5e-7,"p":1E+2,"zero":0,"big308":1' + "0" * 308 + "}"
    ),
    _item("{}"),
    _item('{"deep":' + "[" * 100 + "1" + "]" * 100 + ',"obj":' + '{"a":' * 100 + "{}" + "}" * 100 + "}"),
    b' \t\r\n{ \n"properties" \t: \r{ "a" : [ 1 , { "b" : null } ] ,\n"b":\t"c" , "d" : { } } , "id" : "x" }\r\n ',
    b"[]",
    b'"x"',
    b"1",
    b"null",
    b"{}",
    _item(
        '{"datetime":"2020-01-01T00:00:00Z","a":"2020-01-01","b":"2020-01-01T10:20:30.123456789+05:30",'
        '"c":"2020-01-01 10:20:30-02:00","d":"2020-01-01t10:20:30z","e":"0001-01-01T00:00:00Z",'
        '"f":"9999-12-31T23:59:59.999999Z","g":"2020-02-29T00:00:00","h":"2021-02-29T00:00:00Z",'
        '"i":"2020-13-01","j":"2020-01-01T24:00:00Z","k":"2020-01-01T00:00:60Z","l":"2020-01-01T00:00:00.Z",'
        '"m":"2020-01-01T00:00:00+0530","n":"20200101T000000Z","o":"2020-01-01T00:00","p":"1234-xx-yy",'
        '"q":"2020-01-01T00:00:00ZZ","r":"abcd-efghij","s":"2020-01-01T00:00:00+24:00","t":"0000-01-01",'
        '"u":"2020-01-01T00:00:00.5","v":"\\u0032020-01-01","w":"2020-01-01\\u005400:00:00Z","x":"2020-1-01xxxx",'
        '"y":"2020-01-01T00:00:00-00:00","z":"  2020-01-01"}'
    ),
]

BROKEN: list[bytes] = [
    b"",
    b"   ",
    b"{",
    b'{"properties":{"a":1}',
    b'{"properties":{"a":1}} x',
    b'{"properties":{"a":1}}{}',
    b'{"properties":{"a":1,}}',
    b'{"properties":{"a" 1}}',
    b'{"properties":{"a":01}}',
    b'{"properties":{"a":1.}}',
    b'{"properties":{"a":.5}}',
    b'{"properties":{"a":-}}',
    b'{"properties":{"a":1e}}',
    b'{"properties":{"a":+1}}',
    b'{"properties":{"a":NaN}}',
    b'{"properties":{"a":Infinity}}',
    b'{"properties":{"a":1e999}}',
    b'{"properties":{"a":-1e999}}',
    b'{"properties":{"a":1' + b"0" * 400 + b"}}",
    b'{"properties":{"a":"\\ud800"}}',
    b'{"properties":{"a":"\\udc00\\ud800"}}',
    b'{"properties":{"\\ud800":1}}',
    b'{"properties":{"a":"\\x"}}',
    b'{"properties":{"a":"\\u12"}}',
    b'{"properties":{"a":"tab\there"}}',
    b'{"properties":{"a":"\xff"}}',
    b'{"properties":{"\xc3":1}}',
    b'{"properties":{"a":"\xed\xa0\x80"}}',  # a surrogate in UTF-8
    b'{"properties":{"a":1},"x":"\xc0\xaf"}',  # bad UTF-8 outside properties too
    b'{"properties":{"a":1},"x":[1,2}',
    b'{"properties":{"a":tru}}',
    b'{"properties":{"a":nul}}',
    b'\xef\xbb\xbf{"properties":{}}',
    b'{"properties":{"a":1}}\x00',
    b'{"properties":{"a":1},"bad":1e400}',
    b'{"properties":{"a":[' + b"[" * 1100 + b"]" * 1100 + b"]}}",  # deeper than orjson reads too
]


@pytest.mark.parametrize("text", EDGES)
def test_edge_rows(text: bytes) -> None:
    _, unread = check([text])
    assert not unread


@pytest.mark.parametrize("text", BROKEN)
def test_broken_rows_are_unread(text: bytes) -> None:
    assert reference(text) is None
    _, unread = check([b'{"properties":{"ok":1}}', text, b'{"properties":{"ok":2}}'])
    assert unread == [1]


def test_edge_values_in_detail() -> None:
    got, _ = check(EDGES)
    dups = got[2]
    assert [(e[0], e[1], e[2]) for e in dups] == [(b"a", INT, 1), (b"b", INT, 2), (b"a", INT, 3), (b"a", OBJECT, 0)]
    assert dups[3][6] == b'{"x":1}'
    assert [e[0] for e in got[0]] == [b'a"b', "é\t".encode(), "😀".encode(), b"plain", b""]
    assert got[1][0][6] == 'xé😀/\b\f\n\r\t\\"'.encode() and got[1][1][6] == b"\0"
    assert [got[i] for i in range(3, 8)] == [[], [], [], [], []]
    assert [e[0] for e in got[8]] == [b"b"] and got[9] == [] and [e[0] for e in got[10]] == [b"c"]
    assert [e[0] for e in got[11]] == [b"a"]
    nums = {e[0]: e for e in got[12]}
    assert nums[b"i0"][1:4] == (INT, 0, _f64(0.0)) and nums[b"f0"][1:4] == (FLOAT, 0, _f64(-0.0))
    assert nums[b"e"][1:4] == (FLOAT, 0, _f64(1000.0)) and nums[b"two"][1:4] == (FLOAT, 0, _f64(2.0))
    assert nums[b"max"][1:3] == (INT, 2**63 - 1) and nums[b"min"][1:3] == (INT, -(2**63))
    assert nums[b"over"][1] == BIGINT and nums[b"over"][6] == b"9223372036854775808"
    assert nums[b"under"][1] == BIGINT and nums[b"under"][6] == b"-9223372036854775809"
    assert nums[b"under"][3] == _f64(-9223372036854775809.0)
    assert nums[b"under0"][3] == _f64(0.0) and nums[b"tiny"][3] == _f64(5e-324)
    assert nums[b"big308"][1] == BIGINT and nums[b"big308"][3] == _f64(1e308)
    assert nums[b"d17"][3] == _f64(0.30000000000000004) and nums[b"long"][3] == _f64(0.1)
    assert got[14][0][6] == b"[" * 100 + b"1" + b"]" * 100
    assert [(e[0], e[1], e[6]) for e in got[15]] == [
        (b"a", ARRAY, b'[ 1 , { "b" : null } ]'),
        (b"b", STRING, b"c"),
        (b"d", OBJECT, b"{ }"),
    ]
    stamps = {e[0]: (e[4], e[5]) for e in got[21]}
    assert stamps[b"datetime"] == (1577836800_000000, 1)
    assert stamps[b"a"] == (1577836800_000000, 1)
    assert stamps[b"b"] == (1577836800_000000 + (10 * 3600 + 20 * 60 + 30 - 330 * 60) * 1_000_000 + 123456, 1)
    assert stamps[b"c"] == (1577836800_000000 + (12 * 3600 + 20 * 60 + 30) * 1_000_000, 1)
    assert stamps[b"e"] == (-62135596800_000000, 1)
    assert stamps[b"v"][1] == 1 and stamps[b"w"][1] == 1  # decoded before parsing
    for bad in b"hijklmnopqrstxz":
        assert stamps[bytes([bad])] == (0, 0), chr(bad)


def test_nesting_limit() -> None:
    """Values nest up to the kernel's limit (the item and properties count as two levels); deeper rows go to
    Python, which reads them."""
    inner = MAX_DEPTH - 2
    ok = _item('{"a":' + "[" * inner + "]" * inner + "}")
    deep = _item('{"a":' + "[" * (inner + 1) + "]" * (inner + 1) + "}")
    elsewhere = b'{"properties":{"a":1},"b":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
    got, unread = check([ok, deep, elsewhere], limits=True)
    assert unread == [1, 2] and got[0][0][6] == b"[" * inner + b"]" * inner


# ---- generated documents

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["\ud800", "a\udc00", "\ud83d\ude00", "\x00\x1f\x7f", "\\u0041"])  # lone and paired surrogates
    | st.sampled_from(["2020-01-01T00:00:00Z", "2021-06-30T12:34:56.789+02:00", "1999-12-31", "2020-02-30", "x" * 10])
    | st.datetimes().map(lambda d: d.isoformat())
)
_values = st.recursive(
    _scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
)
_layouts = st.sampled_from(
    [
        {"separators": (",", ":")},
        {},
        {"indent": 2},
        {"indent": "\t", "ensure_ascii": False},
        {"separators": (" ,\n", " :\r\n\t"), "ensure_ascii": False},
    ]
)


def _dumps(value: Any, layout: dict[str, Any]) -> bytes:
    # ensure_ascii=False leaves lone surrogates in: surrogatepass writes them as (invalid) UTF-8 bytes
    return json.dumps(value, **layout).encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=None)
@given(
    props=st.dictionaries(st.text(max_size=8), _values, max_size=8) | _values,
    layout=_layouts,
    before=st.dictionaries(st.sampled_from(["id", "geometry", "properties", "links"]), _values, max_size=3),
)
def test_generated_properties(props: Any, layout: dict[str, Any], before: dict[str, Any]) -> None:
    item = {**before, "properties": props, "assets": {"a": {"href": "s3://x/é.tif"}}}
    check([_dumps(item, layout)])


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.sampled_from(["a", "b", "é", "a\\u0062"]), _scalars), max_size=6),
    twice=st.booleans(),
)
def test_generated_duplicate_keys(pairs: list[tuple[str, Any]], twice: bool) -> None:
    """Duplicate keys by hand: orjson keeps the last, the kernel lists every one."""
    body = ",".join(f'"{k}":{json.dumps(v)}' for k, v in pairs)
    text = ('{"properties":{"gone":1},' if twice else "{") + '"properties":{' + body + "}}"
    got, unread = check([text.encode()])
    if not unread:  # (a lone surrogate among the values: unread, as check saw)
        assert [e[0] for e in got[0]] == [k.replace("\\u0062", "b").encode() for k, _ in pairs]


# ---- broken bytes: never a crash, never a guess


def test_every_real_items_assets_and_their_fields() -> None:
    """The member mode (``asset_fields``): each item's assets, then each asset object's own members."""
    lines = _corpus_lines()
    if not lines:
        pytest.skip(f"needs the shared corpus: {CORPUS} is missing")
    got, unread = check(lines, member="assets")
    assert not unread
    assets = [e[6] for row in got for e in row if e[1] == OBJECT]
    assert len(assets) > len(lines)
    fields, unread = check(assets, member="")
    assert not unread
    assert sum(1 for row in fields for e in row if e[0] == b"href") > 0.95 * len(assets)  # some lack one
    # a key spelled with an escape is the same key
    escaped = [b'{"\\u0061ssets": {"a": {"href": "x"}}, "id": "i"}', b'{"assets": 1, "assets": {"b": {}}}']
    got, _ = check(escaped, member="assets")
    assert [[e[0] for e in row] for row in got] == [[b"a"], [b"b"]]


_MEMBERS = st.sampled_from(["properties", "assets", "", "p"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=6), _MEMBERS)
def test_random_bytes(texts: list[bytes], member: str) -> None:
    check(texts, member=member)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet='{}[]":,\\ 01-.eE+tfnrulasup\t\n', max_size=40), max_size=6), _MEMBERS)
def test_random_json_like_text(texts: list[str], member: str) -> None:
    check([t.encode() for t in texts], member=member)


_LINES = _corpus_lines()
_need_corpus = pytest.mark.skipif(not _LINES, reason=f"needs the shared corpus: {CORPUS} is missing")


def _mutate(line: bytes, at: int, op: int, byte: int) -> bytes:
    at %= len(line) + 1
    if op == 0:
        return line[:at]  # truncated
    if op == 1:
        return line[:at] + bytes([byte]) + line[at + 1 :]  # one byte replaced
    if op == 2:
        return line[:at] + bytes([byte]) + line[at:]  # one byte inserted
    return line[:at] + line[at + 1 :]  # one byte dropped


_STRUCTURAL = b'{}[]":,\\ 0123456789-.eE+tfnu\x00\x1f\x7f\x80\xbf\xc3\xed\xf0\xff'


@_need_corpus
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    muts=st.lists(
        st.tuples(
            st.integers(0, 10**6),
            st.integers(0, 10**6),
            st.integers(0, 3),
            st.integers(0, 255) | st.sampled_from(list(_STRUCTURAL)),
        ),
        min_size=1,
        max_size=4,
    ),
    member=_MEMBERS,
)
def test_mutated_real_items(muts: list[tuple[int, int, int, int]], member: str) -> None:
    texts = [_mutate(_LINES[i % len(_LINES)], at, op, byte) for i, at, op, byte in muts]
    check(texts, member=member)


@_need_corpus
def test_every_truncation_of_a_real_item() -> None:
    line = min((x.strip() for x in _LINES if b'"properties"' in x and len(x) > 800), key=len)
    texts = [line[:k] for k in range(len(line) + 1)]
    _, unread = check(texts)
    assert unread == list(range(len(line)))  # only the whole line reads
