"""JSON parsing and compact dumping (the canonical stream and content hashes: ``stacbatch.kernel._canonical``).

orjson is the fast path. The stdlib is the fallback for what orjson refuses but is still worth keeping losslessly:
integers beyond 64 bits and lone surrogates. NaN, Infinity and numbers beyond a double's range (``1e999``) are
read (so that the item they are in can be named), but never written: JSON has no such numbers, so ``dumps`` raises
``NonFiniteError`` naming where the value is, and the item carrying it fails.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

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
