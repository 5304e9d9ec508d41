"""The `offeropt/instance@1` JSON form (spec section 2): read into a RawInstance, write back."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.io.fields import TABLE_FIELDS, Locator, coerce_table
from optimizer.io.raw import RawInstance, coerce_policy
from optimizer.io.safe_json import SURROGATE_RULE, has_lone_surrogate, parse_json, printable
from optimizer.model.instance import FORMAT, OPTIONAL_TABLES, Instance

_TOP_LEVEL = ("format", "name", "currency", "items", "bundles", "audiences", "channels",
              "segments", "responses", "policy")
# spec section 8's `audiences` and `channels` are optional lists: absent = no rows
_FLAT_TABLES = ("items", "segments", "responses", *OPTIONAL_TABLES)


def read_json(text: str | bytes, origin: str, default_name: str) -> RawInstance:
    raw = RawInstance(origin=origin, name=default_name, currency=None)
    blank = text.removeprefix(b"\xef\xbb\xbf") if isinstance(text, bytes) else text
    if not blank.strip():
        raw.issues.append(Issue(origin, "must be a JSON object", value_text="an empty file"))
        return raw
    try:
        doc = parse_json(text, origin)
    except InputError as exc:
        raw.issues.extend(exc.issues)
        return raw
    read_document(doc, raw)
    return raw


def read_document(doc: object, raw: RawInstance) -> None:
    """Fill `raw` from an already parsed JSON document (used by files and the HTTP API)."""
    if not isinstance(doc, dict):
        raw.issues.append(Issue(raw.origin, "must be a JSON object", value_text=type(doc).__name__))
        return
    fmt = doc.get("format")
    if fmt is None:
        raw.issues.append(Issue("format", f"is required (use {FORMAT!r})", has_value=False))
    elif fmt != FORMAT:
        raw.issues.append(Issue("format", f"must be {FORMAT!r}", fmt))
    for key in doc:
        if key not in _TOP_LEVEL:
            raw.warnings.append(f"{printable(str(key))}: unknown top-level field, ignored")
    for key in ("name", "currency"):
        value = doc.get(key)
        if value is not None and not isinstance(value, str):
            raw.issues.append(Issue(key, "must be a string", value))
        elif has_lone_surrogate(value):
            raw.issues.append(Issue(key, SURROGATE_RULE, value))
        elif isinstance(value, str) and value:
            setattr(raw, key, value)

    for table in _FLAT_TABLES:
        records, positions = _records(doc, table, raw, required=table not in OPTIONAL_TABLES)
        columns = {spec.name: [r.get(spec.name) for r in records] for spec in TABLE_FIELDS[table]}
        _warn_unknown(records, positions, table, TABLE_FIELDS[table], raw)
        raw.tables[table] = coerce_table(
            table, columns, "json", Locator(table, "json", child_pos=positions), raw.issues
        )
    _read_bundles(doc, raw)

    policy = doc.get("policy")
    if policy is None:
        return
    if not isinstance(policy, dict):
        raw.issues.append(Issue("policy", "must be an object", policy))
        return
    coerce_policy(policy, "json", "policy", raw)


def _records(
    container: dict[str, Any], key: str, raw: RawInstance, *, required: bool, prefix: str = ""
) -> tuple[list[dict[str, Any]], np.ndarray]:
    path = f"{prefix}{key}"
    value = container.get(key)
    if value is None:
        if required:
            raw.issues.append(Issue(path, "is required (a list)", has_value=False))
        return [], np.zeros(0, dtype=np.int64)
    if not isinstance(value, list):
        raw.issues.append(Issue(path, "must be a list", value))
        return [], np.zeros(0, dtype=np.int64)
    records: list[dict[str, Any]] = []
    positions: list[int] = []
    for i, entry in enumerate(value):
        if isinstance(entry, dict):
            records.append(entry)
            positions.append(i)
        else:
            raw.issues.append(Issue(f"{path}[{i}]", "must be an object", entry))
    return records, np.asarray(positions, dtype=np.int64)


def _warn_unknown(
    records: list[dict[str, Any]], positions: np.ndarray, path: str, specs: tuple[Any, ...],
    raw: RawInstance, extra: frozenset[str] = frozenset(),
) -> None:
    known = {s.name for s in specs} | extra
    unknown = sorted({k for r in records for k in r if k not in known}, key=str)
    for key in unknown:
        first = next(p for r, p in zip(records, positions, strict=True) if key in r)
        raw.warnings.append(f"{path}[{first}].{printable(str(key))}: unknown field, ignored")


def _read_bundles(doc: dict[str, Any], raw: RawInstance) -> None:
    bundles, positions = _records(doc, "bundles", raw, required=True)
    bundle_specs = TABLE_FIELDS["bundles"]
    _warn_unknown(bundles, positions, "bundles", bundle_specs, raw, frozenset({"items", "perks"}))
    columns = {s.name: [b.get(s.name) for b in bundles] for s in bundle_specs}
    raw.tables["bundles"] = coerce_table(
        "bundles", columns, "json", Locator("bundles", "json", child_pos=positions), raw.issues
    )
    for child, required in (("items", True), ("perks", False)):
        table = "bundle_items" if child == "items" else "perks"
        specs = TABLE_FIELDS[table]
        rows: list[dict[str, Any]] = []
        parent_pos: list[int] = []
        child_pos: list[int] = []
        for bundle, pos in zip(bundles, positions, strict=True):
            records, cpos = _records(bundle, child, raw, required=required, prefix=f"bundles[{pos}].")
            bundle_id = bundle.get("id") if isinstance(bundle.get("id"), str) else None
            key = "item" if child == "items" else "id"
            own = [s.name for s in specs if s.name != "bundle"]
            rows += [{"bundle": bundle_id, **{f: r.get(f) for f in own}} for r in records]
            parent_pos += [int(pos)] * len(records)
            child_pos += [int(c) for c in cpos]
            _warn_unknown(records, cpos, f"bundles[{pos}].{child}", specs, raw, frozenset({key}))
        columns = {s.name: [r[s.name] for r in rows] for s in specs}
        locator = Locator(child, "nested", "bundles", np.asarray(parent_pos), np.asarray(child_pos))
        raw.tables[table] = coerce_table(
            table, columns, "json", locator, raw.issues, synthetic=frozenset({"bundle"})
        )


def instance_to_document(instance: Instance) -> dict[str, Any]:
    """The instance as an `offeropt/instance@1` document; defaults are written out explicitly."""
    items_by_bundle = {
        b: [{"item": r.item, "qty": int(r.qty)} for r in grp.itertuples()]
        for b, grp in instance.bundle_items.groupby("bundle", sort=False)
    }
    perks_by_bundle = {
        b: [{"id": r.id, "cost": _num(r.cost), "lift": _num(r.lift)} for r in grp.itertuples()]
        for b, grp in instance.perks.groupby("bundle", sort=False)
    }
    bundles = []
    for record in _clean_records(instance.bundles):
        bundle_id = record["id"]
        record["items"] = items_by_bundle.get(bundle_id, [])
        if bundle_id in perks_by_bundle:
            record["perks"] = perks_by_bundle[bundle_id]
        bundles.append(record)
    doc: dict[str, Any] = {
        "format": FORMAT,
        "name": instance.name,
        "currency": instance.currency,
        "items": _clean_records(instance.items),
        "bundles": bundles,
    }
    # Spec section 8's lists only when they have rows: a version 1 instance writes as before
    # (segment fields that are null are dropped with every other null below).
    for table in OPTIONAL_TABLES:
        if len(instance.table(table)):
            doc[table] = _clean_records(instance.table(table))
    doc["segments"] = _clean_records(instance.segments)
    doc["responses"] = _clean_records(instance.responses)
    doc["policy"] = instance.policy.to_dict()
    return doc


def _num(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
    return value


def _clean_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Records with numpy scalars made plain and nulls dropped (absent = default)."""
    out = []
    for record in frame.to_dict(orient="records"):
        clean: dict[str, Any] = {}
        for key, value in record.items():
            value = _num(value)
            if value is None or value is pd.NA:
                continue
            clean[str(key)] = list(value) if isinstance(value, tuple) else value
        out.append(clean)
    return out
