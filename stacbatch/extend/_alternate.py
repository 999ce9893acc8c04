"""alternate-assets: other locations of the same asset (``assets.<key>.alternate.<name> = {href, ...}``).

Rules (``../shared/reference/extensions.md``; v1.2.0 by default, v1.1.0 and v1.0.0 selectable):

- ``fold``: an asset ``<prefix><key>`` (CMR-STAC's ``s3_B04`` beside ``B04``) becomes
  ``assets.<key>.alternate.<alternate>`` (its fields kept, ``alternate:name`` added unless it has one) and is
  removed. A ``<prefix><key>`` with no asset ``<key>`` is left as it is and reported: no stub asset is made.
- ``derive``: each asset whose ``href`` matches a regular expression (RE2) gets ``alternate.<alternate>`` with the
  href rewritten by ``regexp_replace`` (``\\1`` for groups) and ``alternate:name``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from stacbatch.edit import Op
from stacbatch.errors import InputError
from stacbatch.extend._base import Extension, Plan, Rule, obj
from stacbatch.extend._sqljson import derive_by_pattern, fold_prefixed, unpaired

_BASE = "https://stac-extensions.github.io/alternate-assets/{}/schema.json"


class AlternateAssets(Extension):
    name: ClassVar[str] = "alternate-assets"
    summary: ClassVar[str] = "other locations of an asset: fold CMR-STAC's s3_<key> assets into <key>.alternate.s3"
    schema_urls: ClassVar[dict[str, str]] = {v: _BASE.format(v) for v in ("v1.2.0", "v1.1.0", "v1.0.0")}
    default_variant: ClassVar[str] = "v1.2.0"
    applies_to: ClassVar[frozenset[str]] = frozenset({"item", "asset"})
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "variant": {"enum": ["v1.2.0", "v1.1.0", "v1.0.0"]},
            "fold": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["prefix", "alternate"],
                    "properties": {
                        "prefix": {"type": "string", "minLength": 1},
                        "alternate": {"type": "string", "minLength": 1},
                        "name": {"type": "string"},
                    },
                },
            },
            "derive": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["match", "href", "alternate"],
                    "properties": {
                        "match": {"type": "string", "minLength": 1},
                        "href": {"type": "string", "minLength": 1},
                        "alternate": {"type": "string", "minLength": 1},
                        "name": {"type": "string"},
                    },
                },
            },
        },
    }
    #: with no configuration: CMR-STAC's S3 twins
    DEFAULT: ClassVar[dict[str, Any]] = {"fold": [{"prefix": "s3_", "alternate": "s3", "name": "S3"}]}

    def plan(self, config: dict[str, Any], stage: Any) -> Plan:
        from stacbatch.stage import has_asset_fields

        old = sorted({f["collection"] for f in stage.manifest.files if not has_asset_fields(f)})
        if old:  # the rules read the asset_fields column, which such files lack: they would be passed over silently
            raise InputError(
                f"extension {self.name}: collection(s) {', '.join(old)} were staged before the asset_fields column; "
                "run `stacbatch upgrade --stage ...` first"
            )
        derives = config.get("derive") or []
        folds = config.get("fold") or ([] if derives else self.DEFAULT["fold"])
        rules = []
        for f in folds:
            prefix, alternate = f["prefix"], f["alternate"]
            expr, todo = fold_prefixed("item.assets", prefix, alternate, f.get("name") or alternate.upper())
            rules.append(
                Rule(
                    name=f"fold {prefix}* assets into alternate.{alternate}",
                    ops=(Op("set", ("assets",), expr=expr),),
                    applies=todo,
                    cannot=unpaired(prefix),
                    why=f"an asset {prefix}<key> has no asset <key> to fold into (left as it is)",
                )
            )
        for d in derives:
            alternate = d["alternate"]
            expr, todo = derive_by_pattern("item.assets", d["match"], d["href"], alternate, d.get("name") or alternate)
            rules.append(
                Rule(
                    name=f"alternate.{alternate} from hrefs matching {d['match']}",
                    ops=(Op("set", ("assets",), expr=expr),),
                    applies=todo,
                )
            )
        return Plan(self.schema_url(config), tuple(rules), collections=lambda doc: _collection(doc, folds, derives))


def _fold(assets: dict[str, Any], prefix: str, alternate: str, name: str, item_assets: bool) -> bool:
    """``assets`` (a collection's ``assets`` or ``item_assets``) with its ``<prefix><key>`` entries folded, in
    place, as the item rule does; in ``item_assets`` the alternate has no ``href`` (the spec forbids it there)."""
    changed = False
    for key in [k for k in assets if k.startswith(prefix) and k[len(prefix) :] in assets]:
        main, twin = assets[key[len(prefix) :]], assets[key]
        if not isinstance(main, dict) or not isinstance(twin, dict):
            continue
        entry = {k: v for k, v in twin.items() if not (item_assets and k == "href")}
        entry.setdefault("alternate:name", name)
        alternates = obj(main.get("alternate"))
        main["alternate"] = {**alternates, alternate: entry}
        del assets[key]
        changed = True
    return changed


def _collection(
    doc: dict[str, Any], folds: list[dict[str, Any]], derives: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """A Collection's ``assets`` and ``item_assets`` given the same rules as its items' assets (``derive`` needs an
    href: ``assets`` only)."""
    import re

    changed = False
    for where in ("assets", "item_assets"):
        assets = doc.get(where)
        if not isinstance(assets, dict):
            continue
        for f in folds:
            name = f.get("name") or f["alternate"].upper()
            changed |= _fold(assets, f["prefix"], f["alternate"], name, where == "item_assets")
        if where == "assets":
            for d in derives:
                pattern = re.compile(d["match"])
                href = re.sub(r"\\(\d)", r"\\g<\1>", d["href"])  # RE2's \1 is Python's \g<1>
                for a in assets.values():
                    if isinstance(a, dict) and isinstance(a.get("href"), str) and pattern.search(a["href"]):
                        alternates = obj(a.get("alternate"))
                        old = alternates.get(d["alternate"])
                        entry = {
                            **(old if isinstance(old, dict) else {}),
                            "href": pattern.sub(href, a["href"], count=1),  # the first match, as regexp_replace
                            "alternate:name": d.get("name") or d["alternate"],
                        }
                        if old != entry:
                            a["alternate"] = {**alternates, d["alternate"]: entry}
                            changed = True
    return doc if changed else None
