"""SQL (DuckDB) over JSON values for extensions: expressions that rewrite an item's ``assets`` object per key, for
whole batches (no Python per item). Each returns the object unchanged where it has nothing to do, so a second run
of the same rule changes nothing."""

from __future__ import annotations

from typing import Any

from stacbatch.engine import _sql


def let(value: str, name: str, body: str) -> str:
    """``body`` with ``name`` bound to ``value``, computed once per row. DuckDB evaluates an expression a lambda
    captures again for every element (a parse of the whole object per key and row: ~14x slower here), so the
    value is passed in as the parameter of a one-element list's lambda instead."""
    return f"list_transform([{value}], lambda {name}: {body})[1]"


def fold_prefixed(assets: str, prefix: str, alternate: str, name: str) -> tuple[str, str]:
    """(the new assets object, the predicate "there is something to fold") for folding each asset ``<prefix><key>``
    into ``assets.<key>.alternate.<alternate>`` (its fields kept, ``alternate:name`` added unless it has one) and
    dropping it. A ``<prefix><key>`` without an asset ``<key>`` stays as it is. The object is read once, into a
    MAP, and the lambdas work on its entries."""
    p, alt, nm = _sql.literal(prefix), _sql.literal(alternate), _sql.literal(name)
    n = len(prefix) + 1
    twin = f"m[{p} || e.key]"
    entry = f"json_merge_patch({twin}, json_object('alternate:name', coalesce({twin} ->> 'alternate:name', {nm})))"
    new_alt = f"json_merge_patch(coalesce(e.value -> 'alternate', '{{}}'::JSON), json_object({alt}, {entry}))"
    folded = f"json_merge_patch(e.value, json_object('alternate', {new_alt}))"
    value = f"CASE WHEN map_contains(m, {p} || e.key) THEN {folded} ELSE e.value END"
    gone = f"starts_with(e.key, {p}) AND map_contains(m, e.key[{n}:])"
    kept = f"list_filter(map_entries(m), lambda e: NOT ({gone}))"
    body = f"to_json(map_from_entries(list_transform({kept}, lambda e: struct_pack(key := e.key, value := {value}))))"
    expr = let(as_map(assets), "m", body)
    return expr, pairs_exist(prefix)


def as_map(obj: str) -> str:
    """A JSON object as a DuckDB MAP of its members (in their order)."""
    return f"CAST({obj} AS MAP(VARCHAR, JSON))"


def _twins(prefix: str, paired: bool) -> str:
    p = _sql.literal(prefix)
    n = len(prefix) + 1
    test = f"map_contains(h, k[{n}:])" if paired else f"NOT map_contains(h, k[{n}:])"
    body = f"len(list_filter(map_keys(h), lambda k: starts_with(k, {p}) AND {test})) > 0"
    return let("asset_fields.href", "h", body)


def pairs_exist(prefix: str) -> str:
    """The predicate "some asset ``<prefix><key>`` has an asset ``<key>``", over the stage's typed asset columns
    (``asset_fields.href``: asset key -> href; no JSON is read)."""
    return _twins(prefix, True)


def unpaired(prefix: str) -> str:
    """The predicate "an asset ``<prefix><key>`` has no asset ``<key>`` to fold into" (typed asset columns)."""
    return _twins(prefix, False)


def derive_by_pattern(assets: str, pattern: str, replacement: str, alternate: str, name: str) -> tuple[str, str]:
    """(the new assets object, the predicate "some asset's href matches") for giving each asset whose ``href``
    matches ``pattern`` (RE2) an ``alternate.<alternate>`` with ``href = regexp_replace(href, pattern,
    replacement)`` (``\\1`` for groups) and ``alternate:name``. An alternate of that key already there is replaced
    by the same value, so a re-run changes nothing."""
    pat, rep = _sql.literal(pattern), _sql.literal(replacement)
    alt, nm = _sql.literal(alternate), _sql.literal(name)
    href = "(e.value ->> 'href')"
    entry = f"json_object('href', regexp_replace({href}, {pat}, {rep}), 'alternate:name', {nm})"
    new_alt = f"json_merge_patch(coalesce(e.value -> 'alternate', '{{}}'::JSON), json_object({alt}, {entry}))"
    derived = f"json_merge_patch(e.value, json_object('alternate', {new_alt}))"
    value = f"CASE WHEN coalesce(regexp_matches({href}, {pat}), false) THEN {derived} ELSE e.value END"
    each = f"list_transform(map_entries(m), lambda e: struct_pack(key := e.key, value := {value}))"
    expr = let(as_map(assets), "m", f"to_json(map_from_entries({each}))")
    todo = let("asset_fields.href", "h", f"len(list_filter(map_values(h), lambda v: regexp_matches(v, {pat}))) > 0")
    return expr, todo


def staged_property(stage: Any, prop: str) -> bool:
    """Whether an expression may name ``properties.<prop>`` (some staged item has a value there). The
    collections' column plans list every property name their items have (as a column or as text only), unless a
    plan is closed (files from before plans, or too many names): a name no plan lists is absent without reading
    anything; otherwise the items view is asked (it also refuses a name whose values are all null)."""
    plans = [(meta or {}).get("columns") for meta in stage.manifest.collections.values()]
    if all(p is not None and not p.get("closed") for p in plans) and not any(
        prop in (p.get("types") or {}) or prop in (p.get("text_only") or {}) for p in plans if p
    ):
        return False  # no plan names it: no item has it, known without reading any
    from stacbatch.edit import compile_where
    from stacbatch.errors import QueryError

    try:
        compile_where(stage.connection, f'properties."{prop}" IS NULL')
    except QueryError:
        return False
    return True
