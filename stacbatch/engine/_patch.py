"""JSON paths as stacbatch prints them (``properties.eo:cloud_cover``, ``assets.data.href``) and the paths a JSON
merge patch (RFC 7396) changes: what the audit log and change sets record."""

from __future__ import annotations

import re

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_:\-]*")


def format_path(segments: tuple[str, ...] | list[str]) -> str:
    return ".".join(s if _PLAIN.fullmatch(s) else '"' + s.replace('"', '""') + '"' for s in segments)


def patch_paths(patch: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The paths a JSON merge patch (RFC 7396) changes: its leaves (arrays count as one value)."""
    if not isinstance(patch, dict):
        return [prefix] if prefix else []
    out: list[tuple[str, ...]] = []
    for key, value in patch.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            out += patch_paths(value, path)
        else:
            out.append(path)
    return out


def changed_paths(patches: list[str | None]) -> list[list[str] | None]:
    """Merge patch texts (from DuckDB's ``json_merge_patch_diff``) -> the changed paths of each (None stays None)."""
    from stacbatch.engine import _json

    return [None if p is None else [format_path(s) for s in patch_paths(_json.loads(p))] for p in patches]
