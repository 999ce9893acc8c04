"""The shape of a mapping's item: a tree of objects, arrays, constants and per-row values (``Leaf``: SQL that
DuckDB evaluates over the batch).

Two back ends write it: ``text_sql`` as one SQL expression that concatenates the JSON text (what ``--explain``
shows, and the path without the C kernel), and ``flatten`` as the arrays the kernel's ``assemble_items`` walks per
row over the leaves' columns, writing the item text and its canonical stream together (``_assemble``). Both leave
out an object member whose value is null unless it is marked kept, and write ``null`` for a null array element.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from stacbatch.engine._sql import literal


@dataclass(frozen=True)
class Leaf:
    """A value computed per row. ``json``: the SQL gives JSON text (VARCHAR); otherwise a typed value, written
    by its type (text as a JSON string, integers, booleans; anything else through DuckDB's ``to_json``).
    ``column``: an output column of the compiled SELECT that already holds this value (not computed twice);
    ``epoch``: that column holds microseconds since 1970, which the kernel writes as RFC 3339 text (what ``sql``
    gives) itself; ``canonical``: an output column holding, where not null, the value's canonical stream (the
    kernel then need not parse the JSON text to hash it); ``default``: JSON text written where the value is null
    (the value then keeps its own type, and a member with a default is never left out); ``source``: a column of the
    batch that is the value as it is; ``pieces``: the value is a template of these literal texts ``(None, text)``
    and columns ``(name, "")`` (text or integers), null where one is null. The kernel reads both from the batch
    itself where it can (``_assemble``), sparing DuckDB a column to convert or a string per row to concatenate;
    likewise ``split``."""

    sql: str
    json: bool = False
    column: str | None = None
    epoch: bool = False
    canonical: str | None = None
    default: str | None = None
    source: str | None = None
    pieces: tuple[tuple[str | None, str], ...] | None = None
    #: the value is a text column split at a separator (column, separator): an array of strings
    split: tuple[str, str] | None = None


@dataclass(frozen=True)
class Const:
    """A constant, as JSON text (``null`` is a null value)."""

    text: str

    @staticmethod
    def of(value: Any) -> Const:
        return Const(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


@dataclass(frozen=True)
class Arr:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Obj:
    #: (key, value, kept when null)
    members: tuple[tuple[str, Node, bool], ...]


Node = Leaf | Const | Arr | Obj


def text_sql(node: Node) -> str:
    """SQL giving the node's JSON text (VARCHAR), NULL for no value. JSON is built by concatenation: measured
    several times faster in DuckDB than nested map/list structures through to_json."""
    if isinstance(node, Leaf):
        text = node.sql if node.json else f"CAST(to_json({node.sql}) AS VARCHAR)"
        return text if node.default is None else f"coalesce({text}, {literal(node.default)})"
    if isinstance(node, Const):
        return "NULL" if node.text == "null" else literal(node.text)
    if isinstance(node, Arr):
        if not node.items:
            return "'[]'"
        elements = ", ".join(f"coalesce({text_sql(v)}, 'null')" for v in node.items)
        return f"('[' || concat_ws(',', {elements}) || ']')"
    pieces = []
    for key, value, keep in node.members:
        name = literal("," + json.dumps(key, ensure_ascii=False) + ":")
        text = text_sql(value)
        kept = f"{name} || coalesce({text}, 'null')"
        pieces.append(kept if keep else f"coalesce({name} || nullif({text}, 'null'), '')")
    if not pieces:
        return "'{}'"
    return f"('{{' || substr(concat({', '.join(pieces)}), 2) || '}}')"


def leaves(node: Node) -> list[Leaf]:
    """The tree's leaves in walk order (the kernel's column numbers)."""
    if isinstance(node, Leaf):
        return [node]
    if isinstance(node, Arr):
        return [leaf for item in node.items for leaf in leaves(item)]
    if isinstance(node, Obj):
        return [leaf for _k, value, _keep in node.members for leaf in leaves(value)]
    return []


COPY, VALUE, MEMBER, OPEN, CLOSE, VALUE_OR, TEMPLATE, SPLIT = range(1, 9)


@dataclass
class Program:
    """The tree as ``assemble_items`` runs it (see ``_kernel_assemble.h``): a program writing the item text, one
    writing its canonical stream, the bytes they copy; leaf i (``leaves`` order) is column i."""

    text: np.ndarray
    canon: np.ndarray
    pool: bytes
    #: template pieces (column or -1 for a literal, -2 for a member's key; pool offset, length), 3 int64 each
    pieces: np.ndarray


class _Emitter:
    """Operations of one program; constant bytes accumulate and become one COPY."""

    def __init__(self, pool: bytearray, pieces: list[tuple[int, int, int]]) -> None:
        self.pool = pool
        self.pieces = pieces
        self.ops: list[tuple[int, int, int, int]] = []
        self.pending = bytearray()

    def put(self, data: bytes) -> None:
        self.pending += data

    def _at(self, data: bytes) -> tuple[int, int]:
        at = len(self.pool)
        self.pool += data
        return at, len(data)

    def op(self, code: int, a: int = 0, key: bytes = b"") -> None:
        if self.pending:
            self.ops.append((COPY, *self._at(bytes(self.pending)), 0))
            self.pending.clear()
        if code in (MEMBER, VALUE_OR):  # key: the member's key, or the bytes written for a null value
            self.ops.append((code, a, *self._at(key)))
        elif code:
            self.ops.append((code, a, 0, 0))

    def template(self, key: bytes | None, pieces: list[tuple[int, bytes]]) -> None:
        """A template: the key (a member, left out where a piece is null) or none (a value: null), then the
        pieces (column number, or -1 and literal bytes)."""
        self.op(0)
        first = len(self.pieces)
        if key is not None:
            self.pieces.append((-2, *self._at(key)))
        for col, text in pieces:
            self.pieces.append((col, *self._at(text)) if col < 0 else (col, 0, 0))
        self.ops.append((TEMPLATE, first, len(self.pieces) - first, key is not None))

    def split(self, col: int, key: bytes, sep: bytes) -> None:
        """A text column split at ``sep`` into an array of strings; ``key``: a member's (left out where null)."""
        self.op(0)
        at, _n = self._at(key + sep)
        self.ops.append((SPLIT, col, at, len(key) | len(sep) << 32))

    def array(self) -> np.ndarray:
        self.op(0)
        return np.array(self.ops, np.int64).reshape(-1, 4)


def _omittable(value: Node, keep: bool, in_sql: frozenset[int] | set[int], number: dict[int, int]) -> bool:
    """A member left out where its value is null: a leaf's, unless kept or it has a default the kernel writes."""
    if keep or not isinstance(value, Leaf):
        return False
    return value.default is None or number[id(value)] in in_sql


def _members(node: Obj) -> list[tuple[str, Node, bool]]:
    # a constant null member that is not kept is never written
    return [(k, v, keep) for k, v, keep in node.members if keep or not (isinstance(v, Const) and v.text == "null")]


def program(
    root: Obj,
    canonical: Any,
    in_sql: frozenset[int] | set[int] = frozenset(),
    templates: dict[int, list[tuple[int, str]]] | None = None,
    splits: dict[int, str] | None = None,
) -> Program:
    """``canonical``: JSON text (bytes) -> its canonical stream (the kernel's ``canonical``); ``in_sql``: leaves
    (by number) whose default their column already holds (their SQL is ``text_sql``'s); ``templates``: leaves the
    kernel writes from pieces (column number, or -1 and literal text); ``splits``: leaves the kernel splits (their
    column holds the text) at this separator."""
    pool = bytearray()
    pieces: list[tuple[int, int, int]] = []
    text, canon = _Emitter(pool, pieces), _Emitter(pool, pieces)
    number: dict[int, int] = {id(leaf): i for i, leaf in enumerate(leaves(root))}
    templates = templates or {}
    seps = {n: sep.encode("utf-8", "surrogatepass") for n, sep in (splits or {}).items()}

    def literal_pieces(n: int) -> list[tuple[int, bytes]]:
        return [(col, t.encode("utf-8", "surrogatepass")) for col, t in templates[n]]

    def omittable(value: Node, keep: bool) -> bool:
        return _omittable(value, keep, in_sql, number)

    def put_leaf(emitter: _Emitter, leaf: Leaf, key: bytes | None, default: bytes | None = None) -> None:
        """A leaf as a value (``key`` None; ``default``: what is written where it is null) or as a member left
        out where null (``key``: the member's key as this program writes it), by the op that writes it."""
        n = number[id(leaf)]
        if n in templates:
            emitter.template(key, literal_pieces(n))
        elif n in seps:
            emitter.split(n, key or b"", seps[n])
        elif key is not None:
            emitter.op(MEMBER, n, key)
        elif leaf.default is None or n in in_sql or default is None:
            emitter.op(VALUE, n)
        else:
            emitter.op(VALUE_OR, n, default)

    def key_text(key: str) -> bytes:
        return (json.dumps(key, ensure_ascii=False) + ":").encode("utf-8", "surrogatepass")

    def key_canon(key: str) -> bytes:
        raw = key.encode("utf-8", "surrogatepass")
        return b"s" + len(raw).to_bytes(4, "little") + raw

    def write_text(node: Node) -> None:
        if isinstance(node, Const):
            text.put(node.text.encode("utf-8", "surrogatepass"))
        elif isinstance(node, Leaf):
            put_leaf(text, node, None, None if node.default is None else node.default.encode("utf-8", "surrogatepass"))
        elif isinstance(node, Arr):
            text.put(b"[")
            for i, item in enumerate(node.items):
                text.put(b"," if i else b"")
                write_text(item)
            text.put(b"]")
        else:
            members = _members(node)
            # commas are fixed when the first member is always written; otherwise CLOSE mends the first
            dynamic = bool(members) and omittable(members[0][1], members[0][2])
            if dynamic:
                text.op(OPEN)
            else:
                text.put(b"{")
            for i, (key, value, keep) in enumerate(members):
                head = (b"," if dynamic or i else b"") + key_text(key)
                if isinstance(value, Leaf) and omittable(value, keep):
                    put_leaf(text, value, head)
                else:
                    text.put(head)
                    write_text(value)
            if dynamic:
                text.op(CLOSE)
            else:
                text.put(b"}")

    def write_canon(node: Node) -> None:
        if isinstance(node, Const):
            canon.put(canonical(node.text.encode("utf-8", "surrogatepass")))
        elif isinstance(node, Leaf):
            default = None if node.default is None else canonical(node.default.encode("utf-8", "surrogatepass"))
            put_leaf(canon, node, None, default)
        elif isinstance(node, Arr):
            canon.put(b"[")
            for item in node.items:
                write_canon(item)
            canon.put(b"]")
        else:
            canon.put(b"{")
            for key, value, keep in sorted(_members(node), key=lambda m: m[0].encode("utf-8", "surrogatepass")):
                if isinstance(value, Leaf) and omittable(value, keep):
                    put_leaf(canon, value, key_canon(key))
                else:
                    canon.put(key_canon(key))
                    write_canon(value)
            canon.put(b"}")

    write_text(root)
    write_canon(root)
    return Program(text.array(), canon.array(), bytes(pool), np.array(pieces, np.int64).reshape(-1, 3))
