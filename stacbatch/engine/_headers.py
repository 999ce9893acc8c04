"""Request headers from options, with ``${ENV}`` values, and the origins they may be sent to: here, not in
``stacbatch.api``, so that commands that only need the parsing (a mapping's HTTP source) do not import aiohttp to
get it (~0.17 s)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from stacbatch.errors import InputError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")
#: RFC 9110 token: what a header name may be
_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: control characters a field value must not hold (tab is allowed): CR/LF would start a new header or request
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def parse_headers(values: list[str]) -> dict[str, str]:
    """``"Name: value"`` options; ``${VAR}`` / ``$VAR`` in values come from the environment (so secrets stay out of
    shell history and process lists). A value with CR, LF or another control character is refused: it would smuggle
    a header (or a request) past the server."""
    out: dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.partition(":")
        name = name.strip()
        if not sep or not name:
            raise InputError("--header: expected 'Name: value' (the value is not shown: it may be a secret)")
        if not _NAME.fullmatch(name):
            raise InputError(f"--header {name!r}: not a header name (letters, digits and -_.!#$%&'*+^`|~ only)")
        missing = [
            m.group(1) or m.group(2) for m in _ENV.finditer(value) if (m.group(1) or m.group(2)) not in os.environ
        ]
        if missing:
            raise InputError(f"--header {name}: environment variable {missing[0]} is not set")
        expanded = _ENV.sub(lambda m: os.environ[m.group(1) or m.group(2)], value.strip())
        if _CONTROL.search(expanded):
            raise InputError(
                f"--header {name}: the value holds a line break or another control character (CR, LF, NUL...); "
                "remove it (check the environment variable it comes from; the value is not shown)"
            )
        out[name] = expanded
    return out


_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the port filled in from the scheme: what "the same site" means for headers."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or _PORTS.get(scheme, 0)


@dataclass(frozen=True)
class HeaderScope:
    """Where user headers (``-H``) go: the origin of the URL they were given with, and the hosts named by
    ``--header-host``. A ``next`` link or redirect elsewhere is requested without them, as browsers do."""

    #: (scheme or "", host, port or 0): "" and 0 match any scheme and port
    allowed: frozenset[tuple[str, str, int]]

    @classmethod
    def of(cls, url: str, hosts: Iterable[str] = ()) -> HeaderScope:
        return cls(frozenset([origin(url), *(parse_header_host(h) for h in hosts)]))

    def allows(self, url: str) -> bool:
        scheme, host, port = origin(url)
        return any(h == host and s in ("", scheme) and p in (0, port) for s, h, p in self.allowed)


def parse_header_host(text: str) -> tuple[str, str, int]:
    """``--header-host``: ``host`` (any scheme and port), ``host:port``, or an origin ``https://host[:port]``."""
    value = text.strip()
    if "://" in value:
        scheme, host, port = origin(value)
        if scheme not in _PORTS or not host or urlsplit(value).path not in ("", "/"):
            raise InputError(f"--header-host {text!r}: expected HOST, HOST:PORT or an origin such as https://HOST")
        return scheme, host, port
    parts = urlsplit("//" + value)
    try:
        port = parts.port or 0
    except ValueError:
        port = -1
    if not parts.hostname or port < 0 or parts.path or parts.query or "@" in value:
        raise InputError(f"--header-host {text!r}: expected HOST, HOST:PORT or an origin such as https://HOST")
    return "", parts.hostname.lower(), port
