"""A CID manifest: href -> IPFS CID (and Filecoin piece CID), as IPFS and Filecoin tooling write them, in CSV,
Parquet or NDJSON. It stays a file: DuckDB reads it where it is needed (its checks here, the join with the stage's
asset hrefs later), streaming, so a manifest of millions of rows is never held in this process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from stacbatch.engine import _sql
from stacbatch.errors import InputError

#: what the dgeo schemas accept (pgstac-variant also takes base32 upper and base58btc CIDv1; main does not)
CID_PATTERNS = {
    "pgstac-variant": r"^(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{58,}|B[A-Z2-7]{58,}|z[1-9A-HJ-NP-Za-km-z]{48,})$",
    "main": r"^(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{58,})$",
}
PIECE_PATTERN = r"^baga6ea[a-z2-7]{52,}$"
#: a manifest with no rows, in the columns of ``source``
EMPTY = "SELECT NULL::VARCHAR AS href, NULL::VARCHAR AS cid, NULL::VARCHAR AS piece, NULL::VARCHAR AS profile LIMIT 0"


def _reader(path: str) -> tuple[str, int]:
    """DuckDB's reader of the file, and the line of its first row (Parquet: row numbers from 1)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such manifest file")
    lit = _sql.literal(str(p.resolve()))
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        return f"read_parquet({lit})", 1
    if suffix in (".ndjson", ".jsonl", ".json"):
        return f"read_json({lit}, format = 'newline_delimited')", 1
    return f"read_csv({lit}, header = true, all_varchar = true)", 2


def source(con: duckdb.DuckDBPyConnection, spec: dict[str, Any], profile_json: str | None) -> str:
    """The manifest ``spec`` names as SQL (``href, cid, piece, profile``; column names from ``href``, ``cid``,
    ``piece_cid``)."""
    path = spec["path"]
    reader, _first = _reader(path)
    try:
        columns = [r[0] for r in con.sql(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
    except duckdb.Error as err:
        raise InputError(f"{path}: not a readable manifest: {_sql.one_line(err)}") from None
    names = {k: spec.get(k, k) for k in ("href", "cid", "piece_cid")}
    for key in ("href", "cid"):
        if names[key] not in columns:
            have = ", ".join(columns) or "none"
            raise InputError(
                f"{path}: no {names[key]!r} column (the {key} column; columns: {have}); name it with {key}:"
            )
    given = names["piece_cid"] in columns
    piece = f"NULLIF(CAST({_sql.ident(names['piece_cid'])} AS VARCHAR), '')" if given else "NULL::VARCHAR"
    profile = _sql.literal(profile_json) if profile_json is not None else "NULL"
    sql = (
        f"SELECT CAST({_sql.ident(names['href'])} AS VARCHAR) AS href, CAST({_sql.ident(names['cid'])} AS VARCHAR) "
        f"AS cid, {piece} AS piece, {profile}::VARCHAR AS profile FROM {reader}"
    )
    return sql


def check(con: duckdb.DuckDBPyConnection, spec: dict[str, Any], sql: str, variant: str) -> bool:
    """Check the whole manifest before anything runs: every row has an href and a CID of the form the dgeo
    ``variant`` accepts, piece CIDs are Filecoin piece CIDs, an href has one CID. ``FILE:LINE: column: problem`` on
    the first bad row. Whether any row has a piece CID. (Aggregates over the file, streaming; the line is looked
    for only when something is wrong.)"""
    from stacbatch.stage import bounded_memory

    path = spec["path"]
    _reader_sql, first = _reader(path)
    cid_ok = f"regexp_full_match(cid, {_sql.literal(CID_PATTERNS[variant])})"
    piece_ok = f"regexp_full_match(piece, {_sql.literal(PIECE_PATTERN)})"
    # (what is wrong, the column as the file names it, the value to show, why)
    problems = [
        ("href IS NULL OR href = ''", spec.get("href", "href"), None, "empty; every row needs the asset's href"),
        (f"cid IS NULL OR NOT {cid_ok}", spec.get("cid", "cid"), "cid", "is not an IPFS CID (Qm..., or base32 b...)"),
        (
            f"piece IS NOT NULL AND NOT {piece_ok}",
            spec.get("piece_cid", "piece_cid"),
            "piece",
            "is not a Filecoin piece CID (baga6ea...)",
        ),
    ]
    counts = con.sql(
        "SELECT " + ", ".join(f"count(*) FILTER ({p[0]})" for p in problems) + f", count(piece) FROM ({sql})"
    ).fetchall()[0]
    for (bad, column, shown, why), n in zip(problems, counts, strict=False):
        if n:
            line, value = con.sql(
                f"SELECT n, {shown or 'NULL'} FROM (SELECT row_number() OVER () AS n, * FROM ({sql})) "
                f"WHERE {bad} ORDER BY n LIMIT 1"
            ).fetchall()[0]
            what = f"{value!r} " if shown else ""
            raise InputError(f"{path}:{first + line - 1}: {column}: {what}{why}")
    with bounded_memory(con):
        clash = con.sql(
            f"SELECT href FROM ({sql}) GROUP BY href "  # (min/max: 4x count(DISTINCT) on millions of rows)
            "HAVING min(cid) <> max(cid) OR min(piece) <> max(piece) LIMIT 1"
        ).fetchall()
    if clash:
        href = clash[0][0]
        rows = con.sql(
            f"SELECT n, cid FROM (SELECT row_number() OVER () AS n, * FROM ({sql})) WHERE href = {_sql.literal(href)} "
            "ORDER BY n"
        ).fetchall()
        (a, cid_a) = rows[0]
        b, cid_b = next((r for r in rows[1:] if r[1] != cid_a), rows[1])  # (or the piece CIDs differ)
        raise InputError(
            f"{path}:{first + b - 1}: href {href!r} has CID {cid_b!r} here and {cid_a!r} at line {first + a - 1}; "
            "give each href one CID"
        )
    return bool(counts[-1])
