"""JSON parsing, compact dumping and canonical hashing.

orjson is the fast path. The stdlib is the fallback for what orjson refuses but is still worth keeping losslessly:
integers beyond 64 bits and lone surrogates. NaN, Infinity and numbers beyond a double's range (``1e999``) are
read (so that the item they are in can be named), but never written: JSON has no such numbers, so ``dumps`` raises
``NonFiniteError`` naming where the value is, and the item carrying it fails.
"""

from __future__ import annotations

import json
import math
import re
import struct
from typing import Any

import orjson
import xxhash

try:  # the C kernel (setup.py); without it the same results come from the pure-Python path, slower
    from stacbatch import _kernel
except ImportError:  # pragma: no cover - a build without a C compiler
    _kernel = None  # type: ignore[assignment]


#: a digit run too long for a 64-bit integer: orjson (3.x) reads such an integer as a float, silently
_LONG_DIGITS = re.compile(rb"[0-9]{19,}")
_LONG_DIGITS_TEXT = re.compile(r"[0-9]{19,}")


def loads(data: bytes | str) -> Any:
    """Parse one JSON document; raises ``ValueError`` with the parser's reason. Integers beyond 64 bits stay exact
    (a document holding a long digit run, in a number or a string, is read by the stdlib)."""
    if (_LONG_DIGITS if isinstance(data, bytes) else _LONG_DIGITS_TEXT).search(data):  # type: ignore[arg-type]
        try:
            return json.loads(data, parse_constant=_non_finite, parse_float=_float)
        except (ValueError, RecursionError) as err:
            raise ValueError(str(err)) from None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as orjson_err:
        try:
            return json.loads(data, parse_constant=_non_finite, parse_float=_float)
        except (ValueError, RecursionError):
            raise ValueError(str(orjson_err)) from None


class NonFinite(float):
    """NaN or an infinity read by the stdlib. orjson would write it as ``null`` (silently lossy); it refuses a float
    subclass instead, so ``dumps`` falls back to the stdlib, which refuses it with the value's path."""


NON_FINITE = "not a finite JSON number (NaN, Infinity or beyond a double's range)"


class NonFiniteError(ValueError):
    """A value that JSON cannot carry (NaN, +-Infinity, or a number beyond a double's range): ``path`` says where."""

    def __init__(self, path: str) -> None:
        super().__init__(f"{path or 'the value'} is {NON_FINITE}")
        self.path = path


def non_finite_path(obj: Any, prefix: str = "") -> str | None:
    """The dotted path (``properties.x``, ``bbox[2]``) of the first non-finite number in ``obj``, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            found = non_finite_path(v, f"{prefix}.{k}" if prefix else str(k))
            if found is not None:
                return found
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found = non_finite_path(v, f"{prefix}[{i}]")
            if found is not None:
                return found
    return None


def _non_finite(token: str) -> float:
    return NonFinite(token)


def _float(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else NonFinite(value)


def dumps(obj: Any) -> bytes:
    """Compact JSON, key order kept, always valid UTF-8 (the stdlib path escapes non-ASCII, lone surrogates too)."""
    try:
        return orjson.dumps(obj)
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
    except ValueError:
        path = non_finite_path(obj)
        if path is None:
            raise
        raise NonFiniteError(path) from None


# The canonical stream (format 2 of the stage): what content hashes are taken of, and how values are compared.
#   null n | true t | false f | integer within int64, or an integral float: i + int64 LE
#   | integer beyond int64: I + u32 LE length + decimal text | other float: d + float64 LE (one NaN)
#   | string: s + u32 LE length + UTF-8 ('surrogatepass') | array: [ ... ] | object: { key value ... } by key bytes
# It depends on values only (not on how a serialiser writes numbers), so 1 and 1.0 agree, and it is produced from
# raw JSON text by the C kernel without building Python objects. ``_stream`` is its pure-Python twin: the two
# must agree byte for byte (tests/test_kernel.py).
_INT64 = (-(2**63), 2**63)
_NAN = b"d" + struct.pack("<Q", 0x7FF8000000000000)
_I = struct.Struct("<cq")
_D = struct.Struct("<cd")


def _stream(obj: Any, out: bytearray) -> None:
    t = type(obj)
    if t is str:
        b = obj.encode("utf-8", "surrogatepass")
        out += b"s"
        out += len(b).to_bytes(4, "little")
        out += b
    elif t is dict:
        out += b"{"
        for key, value in sorted(((k.encode("utf-8", "surrogatepass"), v) for k, v in obj.items()), key=_first):
            out += b"s"
            out += len(key).to_bytes(4, "little")
            out += key
            _stream(value, out)
        out += b"}"
    elif t is list:
        out += b"["
        for value in obj:
            _stream(value, out)
        out += b"]"
    elif obj is None:
        out += b"n"
    elif obj is True:
        out += b"t"
    elif obj is False:
        out += b"f"
    elif t is int:
        if _INT64[0] <= obj < _INT64[1]:
            out += _I.pack(b"i", obj)
        else:
            text = str(obj).encode("ascii")
            out += b"I"
            out += len(text).to_bytes(4, "little")
            out += text
    elif t is float or t is NonFinite:
        if obj.is_integer() and _INT64[0] <= obj < _INT64[1]:
            out += _I.pack(b"i", int(obj))
        elif obj != obj:
            out += _NAN
        else:
            out += _D.pack(b"d", obj)
    else:
        raise TypeError(f"not a JSON value: {t.__name__}")


def _first(pair: tuple[bytes, Any]) -> bytes:
    return pair[0]


def canonical(obj: Any) -> bytes:
    """The canonical stream of a parsed JSON value: equal for values equal as JSON (key order, 1 and 1.0)."""
    if _kernel is not None:
        return _kernel.canonical(dumps(obj))
    out = bytearray()
    _stream(obj, out)
    return bytes(out)


def canonical_text(text: bytes | str) -> bytes:
    """The canonical stream of a JSON text (without building Python objects when the kernel is there)."""
    if _kernel is not None:
        return _kernel.canonical(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    out = bytearray()
    _stream(json.loads(text), out)  # the stdlib keeps integers exact, as the kernel does
    return bytes(out)


def content_hash(obj: Any) -> str:
    """xxh3-128 of the canonical stream, as 32 hex characters."""
    return xxhash.xxh3_128_hexdigest(canonical(obj))


def content_hash_text(text: bytes | str) -> str:
    """``content_hash`` of a JSON text: the hash of a stored item is taken of its stored text."""
    return xxhash.xxh3_128_hexdigest(canonical_text(text))
