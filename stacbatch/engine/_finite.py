"""Non-finite numbers in JSON texts that DuckDB or the kernel wrote, found a whole column at a time.

DuckDB's ``to_json`` writes a DOUBLE's NaN and infinities as ``NaN``/``Infinity``, and a JSON value keeps a number
such as ``1e999`` as written; JSON has neither, so an item holding one fails (the project's rule). A regular
expression over the column picks the texts that might hold one (an RE2 pass, no copy); only those are parsed, and
the number's path is named from the parsed value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stacbatch.engine import _json

#: the reason an item holding one fails (as ``load`` words it)
REASON = _json.NON_FINITE
#: where a value starts, a NaN or an infinity in any case (DuckDB's JSON reads `nan`, `Inf`...), or a number with a
#: three-digit exponent. Strings may match too: the parse tells. Only where a value starts: a bare ``e123`` is in
#: most base32 CIDs and many hrefs, and parsing every such text cost more than the rest of an edit. (~0.5 GB/s; a
#: run of digits would cost as much again, and DuckDB refuses a decimal long enough to overflow without an exponent.)
_SUSPECT = r"(?:^|[\[:,])\s*(?:[-+]?(?i:nan|inf)|-?[0-9][0-9.]*[eE][+]?[0-9][0-9][0-9])"


def non_finite(texts: pa.Array | pa.ChunkedArray) -> list[tuple[int, str]]:
    """(position, path of the number: ``properties.x``, ``[0]``, or "" for the whole value) of each text holding a
    non-finite number, or not JSON at all (a lowercase ``nan``)."""
    if not len(texts):
        return []
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        texts = texts.cast(pa.large_string())
    suspect = pc.match_substring_regex(texts, _SUSPECT)
    found = []
    for i in np.flatnonzero(suspect.fill_null(False).to_numpy(zero_copy_only=False)).tolist():
        path = non_finite_path(texts[i].as_py())
        if path is not None:
            found.append((i, path))
    return found


def non_finite_path(text: str | bytes) -> str | None:
    """Where the first non-finite number of a JSON text is ("" for the whole value), or None when it has none."""
    try:
        value: Any = _json.loads(text)
    except ValueError:
        return ""
    return _json.non_finite_path(value)


def joined(prefix: str, path: str) -> str:
    """``prefix`` (an item path such as ``properties.x``) followed by a path inside its value."""
    if not path:
        return prefix
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"
