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
from stacbatch.extend._base import Extension, Plan, Rule
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
        return Plan(self.schema_url(config), tuple(rules))
