"""IPFS content identifiers (CIDs) of files, computed from their bytes as IPFS's UnixFS importer does.

A file is cut into fixed-size chunks; each chunk is a leaf (raw bytes, or a dag-pb node holding a UnixFS ``File``);
leaves are grouped ``dag_width`` at a time under dag-pb parent nodes (balanced layout), level by level, until one
root is left; a file of one chunk is its leaf. The root's CID is the file's. Profiles are IPIP-499's:
``unixfs-v0-2015`` (what ``ipfs add`` has done by default since 2015: CIDv0, dag-pb leaves, 256 KiB chunks, 174
links per node) and ``unixfs-v1-2025`` (CIDv1, raw leaves, 1 MiB chunks, 1024 links). Tests compare every profile
with ipfs-unixfs-importer (the importer of js-ipfs and Helia) on files of 0 B, 1 B, one chunk and several levels.

Bytes are read as a stream, one chunk at a time: memory is a chunk plus, per level of the tree, the links not yet
grouped (at most ``dag_width`` each), whatever the file's size. Hashing is hashlib's SHA-256 (C; it releases the
GIL on large buffers, so threads hash several files at once).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_DAG_PB = 0x70
_RAW = 0x55
_SHA2_256 = 0x12
_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True)
class Profile:
    """How a CID is made from bytes (the subset of IPIP-499's parameters that matter for a single file)."""

    name: str
    cid_version: int
    raw_leaves: bool
    chunk_size: int
    dag_width: int
    hash_function: str = "sha2-256"

    def record(self, variant: str) -> dict[str, Any]:
        """``dgeo:cid_profile`` for this profile, in the keys of the dgeo schema ``variant`` (pgstac-variant names
        ``chunk_algorithm``/``leaf_envelope``, main ``chunking_algorithm``/``leaves``)."""
        leaves = "raw" if self.raw_leaves else "dag-pb"
        out: dict[str, Any] = {"cid_version": self.cid_version}
        if variant == "main":
            out |= {"hash_function": self.hash_function, "chunking_algorithm": "fixed-size"}
            out |= {"chunk_size": self.chunk_size, "dag_width": self.dag_width, "dag_layout": "balanced"}
            return out | {"leaves": leaves}
        out["multibase_encoding"] = "base32" if self.cid_version == 1 else "base58btc"
        out |= {"hash_function": self.hash_function, "chunk_algorithm": "fixed-size", "chunk_size": self.chunk_size}
        out |= {"dag_width": self.dag_width, "dag_layout": "balanced", "directory_wrapping": False}
        return out | {"leaf_envelope": leaves}


PROFILES = {
    "unixfs-v0-2015": Profile("unixfs-v0-2015", 0, False, 262_144, 174),
    "unixfs-v1-2025": Profile("unixfs-v1-2025", 1, True, 1_048_576, 1024),
}
#: the profile used unless the configuration names another
DEFAULT_PROFILE = "unixfs-v1-2025"


def profile(spec: str | dict[str, Any]) -> Profile:
    """A named profile, or one given by its parameters (``{"cid_version": 1, "chunk_size": 262144, ...}``, missing
    ones from ``base``, default ``unixfs-v1-2025``)."""
    if isinstance(spec, str):
        if spec not in PROFILES:
            raise ValueError(f"unknown CID profile {spec!r}; the profiles are {', '.join(PROFILES)}")
        return PROFILES[spec]
    base = PROFILES[spec.get("base", DEFAULT_PROFILE)]
    version = int(spec.get("cid_version", base.cid_version))
    raw = bool(spec.get("raw_leaves", base.raw_leaves if version == base.cid_version else version == 1))
    if version == 0 and raw:
        raise ValueError("a CIDv0 cannot name raw leaves: use cid_version 1, or raw_leaves false")
    size, width = int(spec.get("chunk_size", base.chunk_size)), int(spec.get("dag_width", base.dag_width))
    if not 1 <= size <= 4_194_304 or width < 2:
        raise ValueError("chunk_size must be 1 B to 4 MiB and dag_width at least 2")
    return Profile("custom", version, raw, size, width)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _uint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _unixfs_file(data: bytes | None, filesize: int, blocksizes: list[int]) -> bytes:
    """A UnixFS ``Data`` message of type File (2): Type, Data (if any), filesize, blocksizes."""
    out = _uint(1, 2)
    if data:
        out += _field(2, data)
    out += _uint(3, filesize)
    for size in blocksizes:
        out += _uint(4, size)
    return out


def _dag_pb(links: list[tuple[bytes, int]], data: bytes) -> bytes:
    """A dag-pb node (links first, as the dag-pb spec orders them): each link Hash, Name "" and Tsize."""
    out = b"".join(_field(2, _field(1, cid) + _field(2, b"") + _uint(3, tsize)) for cid, tsize in links)
    return out + _field(1, data)


def _cid(block: bytes, codec: int, version: int) -> bytes:
    digest = hashlib.sha256(block).digest()
    multihash = bytes((_SHA2_256, len(digest))) + digest
    return multihash if version == 0 else _varint(1) + _varint(codec) + multihash


def encode(cid: bytes) -> str:
    """A binary CID as text: a CIDv0 (a bare multihash) in base58btc, a CIDv1 in base32 (multibase ``b``)."""
    if cid[0] == _SHA2_256:
        n = int.from_bytes(cid, "big")
        text = ""
        while n:
            n, r = divmod(n, 58)
            text = _B58[r] + text
        return "1" * (len(cid) - len(cid.lstrip(b"\0"))) + text
    return "b" + base64.b32encode(cid).decode().lower().rstrip("=")


class _Builder:
    """The DAG of one file, built as its chunks arrive (balanced layout)."""

    def __init__(self, p: Profile) -> None:
        self.p = p
        #: per level: the nodes not yet grouped: (cid, tsize, file bytes under it)
        self.levels: list[list[tuple[bytes, int, int]]] = [[]]
        self.chunks = 0

    def leaf(self, data: bytes) -> None:
        p = self.p
        self.chunks += 1
        if p.raw_leaves:
            node = (_cid(data, _RAW, p.cid_version), len(data), len(data))
        else:
            block = _dag_pb([], _unixfs_file(data, len(data), []))
            node = (_cid(block, _DAG_PB, p.cid_version), len(block), len(data))
        self._add(0, node)

    def _add(self, level: int, node: tuple[bytes, int, int]) -> None:
        if level == len(self.levels):
            self.levels.append([])
        self.levels[level].append(node)
        if len(self.levels[level]) == self.p.dag_width:
            self._add(level + 1, self._parent(level))

    def _parent(self, level: int) -> tuple[bytes, int, int]:
        children, self.levels[level] = self.levels[level], []
        sizes = [c[2] for c in children]
        block = _dag_pb([(c[0], c[1]) for c in children], _unixfs_file(None, sum(sizes), sizes))
        return _cid(block, _DAG_PB, self.p.cid_version), len(block) + sum(c[1] for c in children), sum(sizes)

    def root(self) -> bytes:
        if self.chunks == 0:
            self.leaf(b"")  # an empty file is one empty leaf
        if self.chunks == 1:
            return self.levels[0][0][0]
        level = 0
        while True:  # group what is left, level by level, until one node stands alone
            pending = self.levels[level]
            if len(pending) == 1 and not any(self.levels[level + 1 :]):
                return pending[0][0]
            if pending:
                self._add(level + 1, self._parent(level))
            level += 1


def cid_of_stream(read: Callable[[int], bytes], p: Profile) -> str:
    """The CID of the bytes ``read(n)`` yields until it returns b"" (a file object's ``read``)."""
    builder = _Builder(p)
    pending = b""
    while True:
        data = read(p.chunk_size - len(pending))
        if not data:
            break
        pending += data
        if len(pending) == p.chunk_size:
            builder.leaf(pending)
            pending = b""
    if pending:
        builder.leaf(pending)
    return encode(builder.root())


def cid_of_bytes(data: bytes, p: Profile) -> str:
    """The CID of ``data``."""
    view = memoryview(data)
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        out = bytes(view[pos : pos + n])
        pos += len(out)
        return out

    return cid_of_stream(read, p)
