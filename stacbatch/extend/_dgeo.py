"""dgeo: content-addressed identity (IPFS CIDs) for STAC items (``../shared/reference/extensions.md``).

Assets get ``dgeo:cid`` (and ``dgeo:cid_profile``: how the CID was made), items ``properties."dgeo:cids"`` (their
assets' CIDs, unique, in asset order, after any already listed) and ``dgeo:piece_cids`` (Filecoin piece CIDs, when
the manifest has them; on assets too as ``dgeo:piece_cid`` in the ``main`` variant). Optionally
``alternate.ipfs = {href: ipfs://CID}`` (alternate-assets v1.2.0, declared too).

CIDs come from a manifest (href -> CID[, piece CID], joined in SQL over the whole stage) and/or are computed from
the bytes of the assets whose hrefs are readable (local paths, ``file://``, ``s3://``, ``http(s)://``), streamed,
several at a time (``_cid``). An item whose ``dgeo:cids`` already lists every CID found for it is left alone (so a
second run rewrites nothing); ``refresh: true`` re-applies.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from stacbatch.edit import Lookup, Op, compile_where
from stacbatch.engine import _sql
from stacbatch.errors import InputError
from stacbatch.extend import _cid, _manifest
from stacbatch.extend._alternate import AlternateAssets
from stacbatch.extend._base import Extension, Plan, Rule, obj
from stacbatch.extend._sqljson import as_map, let, staged_property

SCHEMA_URLS = {
    "pgstac-variant": "https://raw.githubusercontent.com/DecentralizedGeo/dgeo-asset/refs/heads/pgstac-variant/"
    "json-schema/schema.json",
    "main": "https://raw.githubusercontent.com/DecentralizedGeo/dgeo/refs/heads/main/json-schema/schema.json",
}
#: the lookup's column in the rewrite: asset key -> what to put on that asset
COLUMN = "_dgeo"
VALUE_TYPE = "MAP(VARCHAR, STRUCT(cid VARCHAR, piece VARCHAR, profile VARCHAR))"
_PROFILE_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"enum": sorted(_cid.PROFILES)},
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "base": {"enum": sorted(_cid.PROFILES)},
                "cid_version": {"enum": [0, 1]},
                "raw_leaves": {"type": "boolean"},
                "chunk_size": {"type": "integer", "minimum": 1, "maximum": 4_194_304},
                "dag_width": {"type": "integer", "minimum": 2},
            },
        },
    ]
}


class Dgeo(Extension):
    name: ClassVar[str] = "dgeo"
    summary: ClassVar[str] = "IPFS CIDs of assets (dgeo:cid, dgeo:cids) from a manifest or computed from the bytes"
    schema_urls: ClassVar[dict[str, str]] = SCHEMA_URLS
    default_variant: ClassVar[str] = "pgstac-variant"
    applies_to: ClassVar[frozenset[str]] = frozenset({"item", "asset"})
    path_keys: ClassVar[tuple[tuple[str, ...], ...]] = (("manifest", "path"),)
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "anyOf": [{"required": ["manifest"]}, {"required": ["compute"]}],
        "properties": {
            "variant": {"enum": sorted(SCHEMA_URLS)},
            "manifest": {
                "type": "object",
                "additionalProperties": False,
                "required": ["path"],
                "properties": {
                    "path": {"type": "string", "minLength": 1},
                    "href": {"type": "string", "minLength": 1},
                    "cid": {"type": "string", "minLength": 1},
                    "piece_cid": {"type": "string", "minLength": 1},
                    "profile": _PROFILE_SCHEMA,
                },
            },
            "compute": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "profile": _PROFILE_SCHEMA,
                    "assets": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "roles": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "concurrency": {"type": "integer", "minimum": 1, "maximum": 256},
                },
            },
            "ipfs_alternate": {"type": "boolean"},
            "refresh": {"type": "boolean"},
        },
    }

    def plan(self, config: dict[str, Any], stage: Any) -> Plan:
        variant = config.get("variant") or self.default_variant
        manifest, pieces = _manifest.EMPTY, False
        if config.get("manifest"):
            spec = config["manifest"]
            record = _record(spec["profile"], variant) if spec.get("profile") else None
            manifest = _manifest.source(stage.connection, spec, record)
            pieces = _manifest.check(stage.connection, spec, manifest, variant)
        compute = config.get("compute")
        computer = _Computer(compute, variant, bool(config.get("refresh"))) if compute is not None else None
        lookup = Lookup(
            COLUMN,
            VALUE_TYPE,
            _lookup_query(stage, bool(config.get("refresh"))),
            COMBINE,
            {"_dgeo_manifest": manifest, "_dgeo_computed": _EMPTY},
            computer.tables if computer else None,
        )
        alternate = bool(config.get("ipfs_alternate"))
        profiles = compute is not None or bool(config.get("manifest", {}).get("profile"))
        keys = None if alternate else _asset_keys(stage)
        if keys is not None:  # a set per asset key and field: the kernel patches them into the stored texts
            ops = _per_key_ops(keys, variant, profiles, pieces)
        else:
            ops = [Op("set", ("assets",), expr=_assets_expr(variant, alternate, profiles, pieces))]
        ops.append(
            Op(
                "set",
                ("properties", "dgeo:cids"),
                expr=_merged("cid", "dgeo:cids", staged_property(stage, "dgeo:cids")),
            )
        )
        if pieces:
            expr = _merged("piece", "dgeo:piece_cids", staged_property(stage, "dgeo:piece_cids"))
            ops.append(Op("set", ("properties", "dgeo:piece_cids"), expr=expr, keep_if_null=True))
        source = " and ".join(
            w for w, on in (("a manifest", config.get("manifest")), ("the asset bytes", compute)) if on
        )
        rule = Rule(name=f"CIDs from {source}", ops=tuple(ops), applies="true")
        also = (AlternateAssets.schema_urls["v1.2.0"],) if alternate else ()
        problems = (lambda: dict(computer.unreadable)) if computer else None
        on_collection = _OnCollection(stage, manifest, computer, variant, alternate, bool(config.get("refresh")))
        return Plan(
            self.schema_url(config),
            (rule,),
            lookups=(lookup,),
            also=also,
            problems=problems,
            collections=on_collection,
        )

    def digest(self, config: dict[str, Any]) -> str | None:
        # bytes read from the assets themselves: no digest covers them
        return None if config.get("compute") is not None else _memo(config)


def _memo(config: dict[str, Any]) -> str | None:
    """The configuration and the manifest file's bytes, digested (xxh3-128: ~0.2 s for 500 MB)."""
    import xxhash

    h = xxhash.xxh3_128(json.dumps(config, sort_keys=True).encode())
    path = (config.get("manifest") or {}).get("path")
    if path:
        if not Path(path).is_file():  # nothing to remember: planning says what is wrong with it
            return None
        with open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def _record(spec: str | dict[str, Any], variant: str) -> str:
    try:
        return json.dumps(_cid.profile(spec).record(variant), separators=(",", ":"))
    except ValueError as err:
        raise InputError(f"extension dgeo: profile: {err}") from None


def _lookup_query(stage: Any, refresh: bool) -> str:
    """A row per selected item's asset whose href has a CID that the item's ``dgeo:cids`` does not list yet (all
    of them with ``refresh``): its key, position, CID, piece CID and profile. Items already done get no row."""
    have = "NULL::VARCHAR[]"  # no staged item has dgeo:cids yet
    if staged_property(stage, "dgeo:cids"):
        have = compile_where(stage.connection, 'TRY_CAST(properties."dgeo:cids" AS VARCHAR[])') or have
    todo = "true" if refresh else "NOT list_contains(coalesce(a.have, []), c.cid)"
    return f"""
SELECT a.filename, a.file_row_number, a.k AS key, a.pos, c.cid, c.piece, c.profile
FROM (
    SELECT filename, file_row_number, have,
           unnest(map_keys(asset_fields.href)) AS k, unnest(map_values(asset_fields.href)) AS h,
           unnest(range(1, CAST(cardinality(asset_fields.href) AS BIGINT) + 1)) AS pos
    FROM (SELECT filename, file_row_number, asset_fields, ({have}) AS have FROM _rows)
) a
JOIN (SELECT * FROM _dgeo_manifest UNION ALL SELECT * FROM _dgeo_computed) c ON c.href = a.h
WHERE {todo}
"""


#: an item's rows as its ``_dgeo`` value: asset key -> (CID, piece CID, profile), in asset order, each row once (a
#: manifest may list an href twice with the same CID)
COMBINE = (
    "map_from_entries(list_transform(list_sort(list(DISTINCT struct_pack(pos := pos, key := key, value := "
    "struct_pack(cid := cid, piece := piece, profile := profile)))), lambda x: struct_pack(key := x.key, "
    "value := x.value)))"
)
_EMPTY = pa.table({k: pa.array([], pa.string()) for k in ("href", "cid", "piece", "profile")})


#: beyond this many distinct asset keys in the stage (CMR-STAC names assets after each granule's files), the
#: assets object is rebuilt per item in SQL instead of a set per key
KEYS_LIMIT = 120


def _asset_keys(stage: Any) -> list[str] | None:
    """The stage's distinct asset keys (its typed asset_fields column), or None when there are too many."""
    rows = stage.connection.sql(
        f"SELECT DISTINCT unnest(map_keys(asset_fields.href)) FROM items LIMIT {KEYS_LIMIT + 1}"
    ).fetchall()
    keys = sorted(k for (k,) in rows if k is not None)
    return keys if len(rows) <= KEYS_LIMIT else None


def _per_key_ops(keys: list[str], variant: str, profiles: bool, pieces: bool) -> list[Op]:
    """``assets.<key>.dgeo:cid`` (and the profile, the piece CID) for each key: NULL, and so left alone, where the
    item has no CID for that asset. A file's rewrite drops the keys none of its items has, and the kernel sets the
    rest in place, without parsing the items (~10x the assets object rebuilt in SQL)."""
    ops = []
    for key in keys:
        d = f"{COLUMN}[{_sql.literal(key)}]"
        ops.append(Op("set", ("assets", key, "dgeo:cid"), expr=f"{d}.cid", keep_if_null=True))
        if profiles:
            ops.append(Op("set", ("assets", key, "dgeo:cid_profile"), expr=f"{d}.profile::JSON", keep_if_null=True))
        if variant == "main" and pieces:
            ops.append(Op("set", ("assets", key, "dgeo:piece_cid"), expr=f"{d}.piece", keep_if_null=True))
    return ops


def _assets_expr(variant: str, alternate: bool, profiles: bool = True, pieces: bool = True) -> str:
    """Each asset with a CID: ``dgeo:cid``, its profile when known (replacing an older one), its piece CID (main),
    ``alternate.ipfs``; the others unchanged."""
    d = f"{COLUMN}[e.key]"
    v = f"json_merge_patch(e.value, json_object('dgeo:cid', {d}.cid))"
    if profiles:  # (each branch left out where it cannot be taken: they cost per asset)
        v = (
            f"CASE WHEN {d}.profile IS NULL THEN {v} ELSE json_merge_patch(json_merge_patch({v}, "
            f"'{{\"dgeo:cid_profile\": null}}'), json_object('dgeo:cid_profile', {d}.profile::JSON)) END"
        )
    if variant == "main" and pieces:
        piece = f"json_object('dgeo:piece_cid', {d}.piece)"
        v = f"CASE WHEN {d}.piece IS NULL THEN {v} ELSE json_merge_patch({v}, {piece}) END"
    if alternate:
        ipfs = f"json_object('ipfs', json_object('href', 'ipfs://' || {d}.cid, 'alternate:name', 'IPFS'))"
        v = f"json_merge_patch({v}, json_object('alternate', {ipfs}))"
    value = f"CASE WHEN map_contains({COLUMN}, e.key) THEN {v} ELSE e.value END"
    each = f"list_transform(map_entries(m), lambda e: struct_pack(key := e.key, value := {value}))"
    return let(as_map("item.assets"), "m", f"to_json(map_from_entries({each}))")


def _merged(field: str, prop: str, staged: bool) -> str:
    """``properties.<prop>``: what it lists, then the item's new ``field`` values (asset order, each once).
    NULL (left alone) when there is nothing to list. ``staged``: whether any item has the property yet."""
    new = f"list_filter(list_transform(map_values({COLUMN}), lambda v: v.{field}), lambda x: x IS NOT NULL)"
    have = f'coalesce(TRY_CAST(item.properties."{prop}" AS VARCHAR[]), [])' if staged else "[]::VARCHAR[]"
    body = "list_concat(have, list_filter(n, lambda x, i: NOT list_contains(have, x) AND list_position(n, x) = i))"
    both = let(have, "have", f"CASE WHEN len({body}) = 0 THEN NULL ELSE to_json({body}) END")
    return let(new, "n", both)


class _Computer:
    """CIDs of the selected items' asset bytes (the hrefs no manifest row and no earlier run gave a CID)."""

    def __init__(self, spec: dict[str, Any], variant: str, refresh: bool) -> None:
        self.profile = _profile(spec.get("profile") or _cid.DEFAULT_PROFILE)
        self.record = _record(spec.get("profile") or _cid.DEFAULT_PROFILE, variant)
        self.keys = spec.get("assets")
        self.roles = spec.get("roles")
        self.concurrency = int(spec.get("concurrency") or 8)
        self.refresh = refresh
        #: href -> why it could not be read (reported per asset, the rest go on)
        self.unreadable: dict[str, str] = {}

    def hrefs(self, stage: Any, predicate: str) -> pa.Table:
        """The selected assets' hrefs to read (``cid`` NULL) and those whose asset has a CID already (an earlier
        run's: kept, not read again, unless ``refresh``), one row per href."""
        from stacbatch.stage import query_rows

        keep = ["h IS NOT NULL", "h NOT IN (SELECT href FROM _dgeo_manifest)"]
        if self.keys:
            keep.append(f"k IN ({', '.join(_sql.literal(k) for k in self.keys)})")
        if self.roles:
            roles = "[" + ", ".join(_sql.literal(r) for r in self.roles) + "]"
            keep.append(f"list_has_any(coalesce(r, []), {roles})")
        cid = "NULL::VARCHAR" if self.refresh else "a[k] ->> 'dgeo:cid'"
        profile = "NULL::VARCHAR" if self.refresh else "(a[k] -> 'dgeo:cid_profile')::VARCHAR"
        query = f"""
SELECT h AS href, any_value(cid) AS cid, any_value(profile) AS profile FROM (
    SELECT h, {cid} AS cid, {profile} AS profile FROM (
        SELECT unnest(map_keys(asset_fields.href)) AS k, unnest(map_values(asset_fields.href)) AS h,
               unnest(map_values(asset_fields.roles)) AS r, {as_map("item -> 'assets'")} AS a
        FROM _rows
    ) WHERE {" AND ".join(keep)}
) GROUP BY h ORDER BY h"""
        return query_rows(stage, predicate, query)

    def tables(self, stage: Any, predicate: str) -> dict[str, pa.Table]:
        found = self.hrefs(stage, predicate)
        had = found.filter(pc.is_valid(found["cid"]))
        todo = found.filter(pc.is_null(found["cid"]))["href"].to_pylist()
        with ThreadPoolExecutor(max(1, min(self.concurrency, len(todo)))) as pool:
            got = list(pool.map(self._one, todo))
        ok = [(h, c) for h, c in zip(todo, got, strict=True) if c is not None]
        table = pa.table(
            {
                "href": pa.array([h for h, _ in ok] + had["href"].to_pylist(), pa.string()),
                "cid": pa.array([c for _, c in ok] + had["cid"].to_pylist(), pa.string()),
                "piece": pa.nulls(len(ok) + had.num_rows, pa.string()),
                "profile": pa.array([self.record] * len(ok) + had["profile"].to_pylist(), pa.string()),
            }
        )
        return {"_dgeo_computed": table}

    def _one(self, href: str) -> str | None:
        from stacbatch.engine import _fs

        if "://" not in href and not href.startswith("/"):
            self.unreadable[href] = "a relative href (stage items with absolute hrefs, or give a manifest)"
            return None
        try:
            fs, path = _fs.filesystem(href)
            # http: a stream (servers need not support ranges); elsewhere, reads of a chunk
            http = href.startswith(("http://", "https://"))
            with fs.open(path, "rb", block_size=0 if http else self.profile.chunk_size) as f:
                return _cid.cid_of_stream(f.read, self.profile)
        except Exception as err:
            self.unreadable[href] = f"{type(err).__name__}: {err}".splitlines()[0][:200]
            return None


class _OnCollection:
    """A Collection's own assets get CIDs as items' do (from the manifest, else read), and the collection its
    top-level ``dgeo:cids``/``dgeo:piece_cids``: a few documents, in Python."""

    def __init__(
        self, stage: Any, manifest: str, computer: _Computer | None, variant: str, alternate: bool, refresh: bool
    ) -> None:
        self.con, self.manifest, self.computer, self.variant = stage.connection, manifest, computer, variant
        self.alternate, self.refresh = alternate, refresh

    def _found(self, assets: dict[str, Any]) -> dict[str, tuple[str, str | None, str | None]]:
        hrefs = sorted({a["href"] for a in assets.values() if isinstance(a, dict) and isinstance(a.get("href"), str)})
        out: dict[str, tuple[str, str | None, str | None]] = {}
        if hrefs:
            wanted = ", ".join(_sql.literal(h) for h in hrefs)
            for href, cid, piece, profile in self.con.sql(
                f"SELECT href, cid, piece, profile FROM ({self.manifest}) WHERE href IN ({wanted})"
            ).fetchall():
                out[href] = (cid, piece, profile)
        c = self.computer
        if c is not None:
            for key, a in assets.items():
                if not isinstance(a, dict) or not isinstance(a.get("href"), str) or a["href"] in out:
                    continue
                if (c.keys and key not in c.keys) or (c.roles and not set(a.get("roles") or []) & set(c.roles)):
                    continue
                if not self.refresh and isinstance(a.get("dgeo:cid"), str):
                    out[a["href"]] = (a["dgeo:cid"], None, None)
                    continue
                cid = c._one(a["href"])
                if cid is not None:
                    out[a["href"]] = (cid, None, c.record)
        return out

    def __call__(self, doc: dict[str, Any]) -> dict[str, Any] | None:
        assets = doc.get("assets")
        if not isinstance(assets, dict):
            return None
        found = self._found(assets)
        cids: list[str] = []
        pieces: list[str] = []
        for a in assets.values():
            if not isinstance(a, dict) or a.get("href") not in found:
                continue
            cid, piece, profile = found[a["href"]]
            a["dgeo:cid"] = cid
            if profile is not None:
                a["dgeo:cid_profile"] = json.loads(profile)
            if piece is not None and self.variant == "main":
                a["dgeo:piece_cid"] = piece
            if self.alternate:
                alternates = obj(a.get("alternate"))
                ipfs = obj(alternates.get("ipfs"))
                a["alternate"] = {**alternates, "ipfs": {**ipfs, "href": f"ipfs://{cid}", "alternate:name": "IPFS"}}
            cids.append(cid)
            if piece is not None:
                pieces.append(piece)
        if not cids:
            return None
        for name, new in (("dgeo:cids", cids), ("dgeo:piece_cids", pieces)):
            have = [v for v in doc.get(name) or [] if isinstance(v, str)]
            merged = have + [v for v in dict.fromkeys(new) if v not in have]
            if merged:
                doc[name] = merged
        return doc


def _profile(spec: str | dict[str, Any]) -> _cid.Profile:
    try:
        return _cid.profile(spec)
    except ValueError as err:
        raise InputError(f"extension dgeo: profile: {err}") from None
