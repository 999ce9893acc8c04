"""The canonical stream of JSON values and the content hash taken of it: the C kernel's ``canonical`` and its
pure-Python twin (``_stream``), which must agree byte for byte (tests/test_kernel.py)."""

from __future__ import annotations

import json
import struct
from typing import Any

import xxhash

from stacbatch.engine._json import NonFinite, dumps

try:
    from stacbatch.kernel import _kernel
except ImportError:  # pragma: no cover - built without the kernel
    _kernel = None  # type: ignore[assignment]


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
