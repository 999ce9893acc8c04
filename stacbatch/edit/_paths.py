"""Item paths (``properties."eo:cloud_cover"``, ``assets.data.href``) and their use inside SQL expressions.

A PATH is dot-separated keys from the item's root; a key with a dot, a quote, a space or an ``=`` is written in
double quotes (``""`` for a quote inside). Inside SQL, ``properties``, ``assets``, ``links`` and ``item`` start a
path; its keys follow SQL identifier rules, so a key such as ``eo:cloud_cover`` must be quoted there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stacbatch.errors import InputError

#: Roots a path may start with inside SQL; ``item`` reaches any top-level key (``item.stac_extensions``).
SQL_ROOTS = ("properties", "assets", "links", "item")
_BARE = re.compile(r"[^.\"\s=]+")


class PathError(InputError):
    pass


def parse_path(text: str) -> tuple[str, ...]:
    """``properties."eo:cloud_cover"`` -> ("properties", "eo:cloud_cover"). Bare keys may contain ``:`` and ``-``."""
    segments, rest = _take_path(text.strip())
    if rest.strip():
        raise PathError(f"path {text!r}: unexpected {rest.strip()!r}; quote keys that hold dots, spaces or '='")
    return segments


def _take_path(text: str) -> tuple[tuple[str, ...], str]:
    segments: list[str] = []
    i = 0
    while True:
        if text[i : i + 1] == '"':
            j = i + 1
            key = []
            while True:
                k = text.find('"', j)
                if k < 0:
                    raise PathError(f"path {text!r}: unterminated quoted key")
                key.append(text[j:k])
                if text[k + 1 : k + 2] == '"':
                    key.append('"')
                    j = k + 2
                    continue
                i = k + 1
                break
            segments.append("".join(key))
        else:
            m = _BARE.match(text, i)
            if not m:
                raise PathError(f"path {text!r}: expected a key at position {i + 1}")
            segments.append(m.group())
            i = m.end()
        if text[i : i + 1] != ".":
            return tuple(segments), text[i:]
        i += 1


def split_assignment(text: str, what: str) -> tuple[tuple[str, ...], str]:
    """``PATH=VALUE`` -> (segments, VALUE)."""
    segments, rest = _take_path(text.strip())
    rest = rest.lstrip()
    if not rest.startswith("="):
        raise PathError(f"{what} {text!r}: expected PATH=..., e.g. properties.platform='landsat-8'")
    return segments, rest[1:].strip()


def pointer(segments: tuple[str, ...] | list[str]) -> str:
    """JSON Pointer (RFC 6901), which DuckDB's JSON functions take as a path."""
    return "".join("/" + s.replace("~", "~0").replace("/", "~1") for s in segments)


def item_segments(segments: tuple[str, ...]) -> tuple[str, ...]:
    """Segments relative to the item root (``item.x`` -> ``x``)."""
    return segments[1:] if segments and segments[0] == "item" else segments


@dataclass(frozen=True)
class Reference:
    """A path used inside an SQL expression; ``segments`` are from the item root."""

    text: str
    segments: tuple[str, ...]


TOKEN = re.compile(
    r"""
    (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<dot>\.)
  | (?P<space>\s+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def find_references(expr: str) -> tuple[str, list[Reference]]:
    """Replace item paths in an SQL expression by placeholders ``{ref0}``, ``{ref1}``, ... (braces in the rest are
    doubled for ``str.format``). Bare ``properties``/``assets``/``links`` become placeholders too."""
    tokens = [(m.lastgroup or "other", m.group()) for m in TOKEN.finditer(expr)]
    out: list[str] = []
    refs: list[Reference] = []
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        prev = tokens[i - 1] if i else ("space", "")
        if kind == "ident" and text.lower() in SQL_ROOTS and prev[0] != "dot":
            segs = [] if text.lower() == "item" else [text.lower()]
            j = i + 1
            while j + 1 < len(tokens) and tokens[j][0] == "dot" and tokens[j + 1][0] in ("ident", "quoted"):
                k_kind, k_text = tokens[j + 1]
                segs.append(k_text[1:-1].replace('""', '"') if k_kind == "quoted" else k_text)
                j += 2
            next_kind = tokens[j][1] if j < len(tokens) else ""
            if segs and next_kind != "(":  # not a function call such as properties(...)
                refs.append(Reference("".join(t for _, t in tokens[i:j]), tuple(segs)))
                out.append("{ref" + str(len(refs) - 1) + "}")
                i = j
                continue
        out.append(text.replace("{", "{{").replace("}", "}}"))
        i += 1
    return "".join(out), refs
