"""A plan's offers for the checker (`optimizer.plan.check`): their JSON types, then each offer found
in the instance, with the rules and the claimed figures of a single offer.

Whole columns at a time: an offer's fields are read into columns once, and every rule is
evaluated over them; only a broken rule costs a line of Python (its message).
"""

from __future__ import annotations

import math
import operator
from itertools import repeat
from operator import methodcaller
from typing import Any

import numpy as np
import pandas as pd

from optimizer.errors import Issue
from optimizer.plan.check_catalog import Catalog, positions

REL_TOL = 1e-6
OFFER_FIELDS = ("segment", "bundle", "discount", "perk", "share", "reference_price", "price",
                "expected_takes", "expected_incremental_margin")
_TYPED = (  # (field, kind, rule) in the order issues are listed for one offer
    ("segment", "id", "must be a string (a segment id)"),
    ("bundle", "id", "must be a string (a bundle id)"),
    ("discount", "number", "must be a number"),
    ("perk", "perk", "must be a string (a perk id) or null"),
    ("share", "number", "must be a number in (0, 1]"),
)
_CLAIMS = ("reference_price", "price", "expected_takes", "expected_incremental_margin")


def is_instance(values: list[Any], kind: type | tuple[type, ...]) -> np.ndarray:
    """isinstance(value, kind) for each of `values`, as a bool array."""
    return np.fromiter(map(isinstance, values, repeat(kind)), dtype=bool, count=len(values))


def is_number(values: list[Any]) -> np.ndarray:
    """A JSON number: an int or a float, and not a bool."""
    return is_instance(values, (int, float)) & ~is_instance(values, bool)


def as_floats(values: list[Any], numeric: np.ndarray | None = None) -> np.ndarray:
    """`values` as floats, NaN where `numeric` is False (None: all are numbers or None); an
    integer too large for a float is infinite."""
    if numeric is not None:
        values = pd.Series(values, dtype=object).where(numeric, np.nan).tolist()
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:  # a JSON integer of 309 digits: rare, so one at a time
        return np.array([_float(v) if isinstance(v, int) else v for v in values], dtype=np.float64)


def _float(v: int) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def is_none(values: list[Any]) -> np.ndarray:
    return np.fromiter(map(operator.is_, values, repeat(None)), dtype=bool, count=len(values))


def _typed(values: list[Any], kind: str) -> np.ndarray:
    if kind == "id":
        return is_instance(values, str)
    if kind == "perk":
        return is_instance(values, str) | is_none(values)
    return is_number(values)


def read_offers(plan: Any) -> tuple[list[Issue], dict[str, list[Any]]]:
    """The fields of `plan` whose JSON type is wrong, so that no rule can be evaluated on them,
    and the offers' fields as columns of their JSON values (None where a field is missing)."""
    empty: dict[str, list[Any]] = {name: [] for name in OFFER_FIELDS}
    if not isinstance(plan, dict):
        return [Issue("plan", "must be a JSON object", plan)], empty
    offers = plan.get("offers")
    if not isinstance(offers, list):
        return [Issue("offers", "must be a list of objects", offers)], empty
    is_dict = is_instance(offers, dict)
    found = [(int(i), -1, Issue(f"offers[{i}]", "must be an object", offers[i]))
             for i in np.flatnonzero(~is_dict)]
    dicts = offers if is_dict.all() else [  # a malformed plan only: an entry that is no object
        o if ok else {} for o, ok in zip(offers, is_dict, strict=True)]
    columns = {name: list(map(methodcaller("get", name), dicts)) for name in OFFER_FIELDS}
    for k, (name, kind, rule) in enumerate(_TYPED):
        values = columns[name]
        found += [(int(i), k, Issue(f"offers[{i}].{name}", rule, values[i]))
                  for i in np.flatnonzero(~_typed(values, kind)) if name in dicts[i]]
    found.sort(key=operator.itemgetter(0, 1))
    issues = [issue for _, _, issue in found]
    if not isinstance(plan.get("kpis"), dict | None):
        issues.append(Issue("kpis", "must be an object or null", plan.get("kpis")))
    return issues, columns


def plan_issues(plan: Any) -> list[Issue]:
    """Fields whose JSON type is wrong, so that no rule can even be evaluated on them: each
    offer's `segment`, `bundle`, `discount`, `perk` and `share`, and `offers` and `kpis`."""
    return read_offers(plan)[0]


class Columns:
    """The offers' fields as columns of their JSON values (None where a field is missing)."""

    def __init__(self, raw: dict[str, list[Any]]) -> None:
        self.raw = raw
        self._types: dict[str, set[type]] = {}

    def types(self, name: str) -> set[type]:
        if name not in self._types:
            self._types[name] = set(map(type, self.raw[name]))
        return self._types[name]

    def floats(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The field as floats (NaN where it is no number), and where it is a number; a bool
        counts as one, as `isinstance(got, int | float)` has it."""
        values = self.raw[name]
        if self.types(name) <= {float, int, type(None)}:
            return as_floats(values), np.ones(len(values), dtype=bool)
        numeric = is_instance(values, (int, float))
        return as_floats(values, numeric), numeric

    def numbers(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The field as floats where it is a JSON number (not a bool), NaN elsewhere, and where."""
        values = self.raw[name]
        if self.types(name) <= {float, int}:
            return as_floats(values), np.ones(len(values), dtype=bool)
        number = is_number(values)
        return as_floats(values, number), number

    def strings(self, name: str) -> list[Any]:
        """The field where it is a string, None elsewhere."""
        values = self.raw[name]
        if self.types(name) <= {str, type(None)}:
            return values
        return pd.Series(values, dtype=object).where(is_instance(values, str), None).tolist()

    def keys(self, name: str) -> list[Any]:
        """The field as a key: strings and None as they are, anything else as text no id is."""
        values = self.raw[name]
        if self.types(name) <= {str, type(None)}:
            return values
        other = ~(is_instance(values, str) | is_none(values))
        return [f"\0{v!r}" if o else v for v, o in zip(values, other, strict=True)]

    def shown(self, name: str, at: np.ndarray) -> list[Any]:
        """The field's values at the offers `at` as the former table of offers showed them
        (a whole number as a float where the column holds floats, a missing id as nan)."""
        values = self.raw[name]
        if not len(at):
            return []
        if name != "perk" and self.types(name) not in ({float}, {str}):
            shown: list[Any] = pd.Series(values).iloc[at].tolist()
            return shown
        return [values[i] for i in at.tolist()]


def match_offers(cat: Catalog, cols: Columns, bad: list[str],
                 compare_claims: bool = True) -> pd.DataFrame:
    """The offers that are variants of the instance, in plan order, with their economics
    (spec section 3); a line in `bad` for each offer that is none, is no candidate, has a
    share outside (0, 1] or (with `compare_claims`) claims a figure other than its own."""
    s = cols.floats("share")[0]
    off = np.flatnonzero(~((s > 0) & (s <= 1)))
    bad += [f"offers[{i}].share: must be in (0, 1], got {v!r}"
            for i, v in zip(off.tolist(), cols.shown("share", off), strict=True)]

    seg = positions(cols.raw["segment"], cat.segment_ids)
    bun = positions(cols.raw["bundle"], cat.bundle_ids)
    variant = cat.variant_rows(bun, cols.floats("discount")[0], cat.perk_rows(bun, cols.raw["perk"]))
    response = cat.response_rows(seg, bun)
    hit = np.flatnonzero((variant >= 0) & (response >= 0))
    econ = cat.economics(seg[hit], response[hit], variant[hit])

    lines: list[tuple[int, int, str]] = []  # (offer, order within the offer, message)
    miss = np.flatnonzero((variant < 0) | (response < 0))
    lines += [(i, 0, f"offers[{i}]: must be a variant of a (segment, bundle) response with a "
                     f"discount of the bundle's ladder and one of its perks, got ({sg!r}, {b!r}, "
                     f"{d!r}, {p!r})")
              for i, sg, b, d, p in _rows(cols, ("segment", "bundle", "discount", "perk"), miss)]
    not_candidate = hit[~econ["candidate"]]
    lines += [(i, 0, f"offers[{i}]: must be a candidate (segment not silent, r > 0, margin floor, "
                     f"max_discount, non-negative uplift), got ({sg!r}, {b!r}, discount {d})")
              for i, sg, b, d in _rows(cols, ("segment", "bundle", "discount"), not_candidate)]
    if compare_claims:
        ok = econ["candidate"]
        truths = (econ["ref"], econ["r"], s[hit] * econ["views"] * econ["prob"], s[hit] * econ["value"])
        for k, (field, truth) in enumerate(zip(_CLAIMS, truths, strict=True), start=1):
            got, numeric = cols.floats(field)
            with np.errstate(invalid="ignore"):  # inf - inf: no number, so not close
                g, diff = got[hit], np.abs(got[hit] - truth)
            close = np.isfinite(diff) & (diff <= REL_TOL * np.maximum(np.maximum(1.0, np.abs(g)),
                                                                      np.abs(truth)))
            wrong = np.flatnonzero(ok & ~(numeric[hit] & close))
            lines += [(i, k, f"offers[{i}].{field}: must be {t!r}, got {v!r}") for i, t, v in zip(
                hit[wrong].tolist(), truth[wrong].tolist(), cols.shown(field, hit[wrong]), strict=True)]
    lines.sort(key=operator.itemgetter(0, 1))
    bad += [text for _, _, text in lines]

    chosen = pd.DataFrame({"segment": seg[hit], "share": s[hit], **econ})
    chosen["group"] = cat.group[econ["bundle"]]
    return chosen


def _rows(cols: Columns, names: tuple[str, ...], at: np.ndarray) -> list[tuple[Any, ...]]:
    """(position, value of each field) at the offers `at`, as messages show them."""
    return list(zip(at.tolist(), *(cols.shown(name, at) for name in names), strict=True))
