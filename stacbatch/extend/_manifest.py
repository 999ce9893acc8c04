"""A CID manifest: href -> IPFS CID (and Filecoin piece CID), as IPFS and Filecoin tooling write them, read from CSV,
Parquet or NDJSON and checked whole (vectorised) before anything is applied."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from stacbatch.errors import InputError

#: what the dgeo schemas accept (pgstac-variant also takes base32 upper and base58btc CIDv1; main does not)
CID_PATTERNS = {
    "pgstac-variant": r"^(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{58,}|B[A-Z2-7]{58,}|z[1-9A-HJ-NP-Za-km-z]{48,})$",
    "main": r"^(Qm[1-9A-HJ-NP-Za-km-z]{44}|b[a-z2-7]{58,})$",
}
PIECE_PATTERN = r"^baga6ea[a-z2-7]{52,}$"
#: the columns of a read manifest
SCHEMA = pa.schema([("href", pa.string()), ("cid", pa.string()), ("piece", pa.string()), ("profile", pa.string())])


def empty() -> pa.Table:
    return SCHEMA.empty_table()


def _read(path: str) -> tuple[pa.Table, int]:
    """The table and the line number of its first row (Parquet: row numbers from 1)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such manifest file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(p), 1
        if suffix in (".ndjson", ".jsonl", ".json"):
            import pyarrow.json as pj

            return pj.read_json(p), 1
        import pyarrow.csv as pcsv

        convert = pcsv.ConvertOptions(strings_can_be_null=False, quoted_strings_can_be_null=False)
        return pcsv.read_csv(p, convert_options=convert), 2
    except (OSError, pa.ArrowException) as err:
        raise InputError(f"{path}: not a readable manifest ({suffix.lstrip('.') or 'csv'}): {err}") from None


def read(spec: dict[str, Any], variant: str, profile_json: str | None) -> pa.Table:
    """The manifest ``spec`` names (``path``; column names ``href``, ``cid``, ``piece_cid``), checked: every row
    has an href and a CID of the form the dgeo ``variant`` accepts, piece CIDs are Filecoin piece CIDs, and an href
    appears with one CID only. ``FILE:LINE: column: problem`` on the first bad row."""
    path = spec["path"]
    table, first = _read(path)
    cols = {k: spec.get(k, k) for k in ("href", "cid", "piece_cid")}
    for key in ("href", "cid"):
        if cols[key] not in table.column_names:
            have = ", ".join(table.column_names) or "none"
            raise InputError(
                f"{path}: no {cols[key]!r} column (the {key} column; columns: {have}); name it with {key}:"
            )
    piece_given = cols["piece_cid"] in table.column_names

    def text(name: str) -> pa.ChunkedArray:
        try:
            return table[name].cast(pa.string())
        except pa.ArrowException:
            raise InputError(f"{path}: column {name!r} must hold text") from None

    href, cid = text(cols["href"]), text(cols["cid"])
    piece = text(cols["piece_cid"]) if piece_given else pa.chunked_array([pa.nulls(len(table), pa.string())])
    piece = pc.if_else(pc.equal(piece, ""), None, piece)

    def first_bad(mask: pa.ChunkedArray | pa.Array, column: str, problem: str | Callable[[int], str]) -> None:
        bad = pc.fill_null(mask, True)
        if pc.any(bad).as_py():
            i = int(pc.index(bad, True).as_py())
            raise InputError(f"{path}:{first + i}: {column}: {problem(i) if callable(problem) else problem}")

    first_bad(pc.invert(pc.greater(pc.utf8_length(href), 0)), cols["href"], "empty; every row needs the asset's href")
    first_bad(
        pc.invert(pc.match_substring_regex(cid, CID_PATTERNS[variant])),
        cols["cid"],
        lambda i: f"{cid[i].as_py()!r} is not an IPFS CID (CIDv0 Qm..., or CIDv1 in base32 b...)",
    )
    if piece_given:
        ok = pc.or_kleene(pc.is_null(piece), pc.match_substring_regex(piece, PIECE_PATTERN))
        first_bad(
            pc.invert(ok),
            cols["piece_cid"],
            lambda i: f"{piece[i].as_py()!r} is not a Filecoin piece CID (baga6ea...)",
        )
    out = pa.table(
        {
            "href": href,
            "cid": cid,
            "piece": piece,
            "profile": pa.chunked_array([pa.array([profile_json] * len(table), pa.string())]),
        }
    )
    return _dedupe(out, path, first)


def _dedupe(table: pa.Table, path: str, first: int) -> pa.Table:
    """One row per href; an href listed twice with different CIDs is an error naming both lines. (DuckDB: its
    parallel hash aggregate is ~5x pyarrow's on a million rows; one pass checks and dedupes.)"""
    if not len(table):
        return table.cast(SCHEMA)
    from stacbatch.engine import _sql

    con = _sql.connect()
    try:
        con.register("_m", table.append_column("_n", pa.array(range(len(table)), pa.int64())))
        groups = con.sql(
            "SELECT href, min(_n) AS a, max(_n) AS b, count(DISTINCT cid) > 1 OR count(DISTINCT piece) > 1 AS clash, "
            "any_value(cid) AS cid, any_value(piece) AS piece, any_value(profile) AS profile FROM _m GROUP BY href"
        ).to_arrow_table()
        clash = groups.filter(groups["clash"])
        if len(clash):
            at = pc.index(clash["a"], pc.min(clash["a"])).as_py()
            href, a, b = (clash[k][at].as_py() for k in ("href", "a", "b"))
            cids = dict(con.sql(f"SELECT _n, cid FROM _m WHERE _n IN ({a}, {b})").fetchall())
            raise InputError(
                f"{path}:{first + b}: href {href!r} has CID {cids[b]!r} here and {cids[a]!r} at line {first + a}; "
                "give each href one CID"
            )
        return groups.select(["href", "cid", "piece", "profile"]).cast(SCHEMA)
    finally:
        con.close()
