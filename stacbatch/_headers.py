"""Request headers from options, with ``${ENV}`` values: here, not in ``stacbatch.api``, so that commands that only
need the parsing (a mapping's HTTP source) do not import aiohttp to get it (~0.17 s)."""

from __future__ import annotations

import os
import re

from stacbatch.errors import InputError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def parse_headers(values: list[str]) -> dict[str, str]:
    """``"Name: value"`` options; ``${VAR}`` / ``$VAR`` in values come from the environment (so secrets stay out of
    shell history and process lists)."""
    out: dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.partition(":")
        name = name.strip()
        if not sep or not name:
            raise InputError("--header: expected 'Name: value' (the value is not shown: it may be a secret)")
        missing = [
            m.group(1) or m.group(2) for m in _ENV.finditer(value) if (m.group(1) or m.group(2)) not in os.environ
        ]
        if missing:
            raise InputError(f"--header {name}: environment variable {missing[0]} is not set")
        out[name] = _ENV.sub(lambda m: os.environ[m.group(1) or m.group(2)], value.strip())
    return out
