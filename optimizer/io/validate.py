"""Every field rule of spec sections 2 and 8, checked over whole columns at once.

All issues are collected; the instance is built only when there are none.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.io.lookup import first_occurrences, positions
from optimizer.io.raw import RawInstance, RawTable
from optimizer.model.instance import (
    BUNDLE_KINDS,
    OPTIONAL_SEGMENT_COLUMNS,
    TABLE_COLUMNS,
    Instance,
    Policy,
)

MAX_PER_RULE = 50  # beyond this, one summary line per rule keeps reports readable

# Bounds on finite but absurd numbers (docs/formats.md, "Bounds on numbers"). Money and
# counts stay integers exact in a float64 (2**53 is about 9.007e15), and their products
# (views x margin, summed over every segment) stay far from overflow. Logit-scale numbers
# beyond 100 would multiply the odds of a take by e**100: no data says that.
MAX_MONEY = 1e15
MAX_COUNT = 1e15
MAX_LOGIT = 100.0
MONEY_RULE = "must be <= 1e15 (the largest amount of money offeropt takes)"
COUNT_RULE = "must be <= 1e15 (the largest count offeropt takes)"
LOGIT_RULE = "must be in [-100, 100] (the bound on logit-scale numbers)"


class _Checker:
    def __init__(self, raw: RawInstance) -> None:
        self.raw = raw
        self.issues = raw.issues
        # tables whose file (or list) is missing altogether: reported once, by the reader
        self.absent = {i.path.split(".")[0] for i in raw.issues
                       if "[" not in i.path and i.rule.startswith("is required")}

    def usable(self, table: RawTable, column: str) -> bool:
        """Whether any cell of a column could be read. A table or a column missing from a
        header (or empty in every row) is reported once; checks of other tables that depend
        on it would only echo that problem, row by row, so they are skipped."""
        if table.name in self.absent:
            return False
        return len(table) == 0 or bool(table.given(column).any())

    def rule(self, table: RawTable, column: str, broken: np.ndarray, message: str,
             *, shown: pd.Series | np.ndarray | None = None) -> None:
        """Report rows where `broken` holds, skipping cells already reported unreadable or null."""
        mask = broken & table.given(column)
        self.rows(table, column, mask, message, shown=shown)

    def rows(self, table: RawTable, column: str, mask: np.ndarray, message: str,
             *, shown: pd.Series | np.ndarray | None = None, has_value: bool = True) -> None:
        values = table.frame[column] if shown is None else pd.Series(shown)
        rows = np.flatnonzero(mask)
        for i in rows[:MAX_PER_RULE]:
            path = table.locator.path(int(i), column)
            value = values.iloc[int(i)]
            value = value.item() if isinstance(value, np.generic) else value
            self.issues.append(Issue(path, message, value, has_value=has_value))
        if len(rows) > MAX_PER_RULE:
            path = f"{table.name}[*].{column}"
            hidden = len(rows) - MAX_PER_RULE
            self.issues.append(Issue(path, f"{hidden} more rows break this rule: {message}",
                                     has_value=False))

    def number(self, table: RawTable, column: str, *, low: float | None = None,
               high: float | None = None, low_open: bool = False, high_open: bool = False) -> None:
        values = table.frame[column].to_numpy(dtype=np.float64)
        self.rule(table, column, ~np.isfinite(values), "must be a finite number")
        finite = np.isfinite(values)
        with np.errstate(invalid="ignore"):
            broken = np.zeros(len(values), bool)
            if low is not None:
                broken |= (values <= low) if low_open else (values < low)
            if high is not None:
                broken |= (values >= high) if high_open else (values > high)
        if low is not None or high is not None:
            self.rule(table, column, broken & finite, _range_text(low, high, low_open, high_open))

    def bounded(self, table: RawTable, column: str, high: float, rule: str,
                *, symmetric: bool = False) -> None:
        """Finite values beyond `high` (or below `-high` when `symmetric`)."""
        values = table.frame[column].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            beyond = (np.abs(values) if symmetric else values) > high
        self.rule(table, column, beyond & np.isfinite(values), rule)

    def unique(self, table: RawTable, columns: list[str], what: str) -> None:
        given = np.logical_and.reduce([table.given(c) for c in columns])
        dup = ~first_occurrences(table.frame[columns]) & given
        self.rows(table, columns[-1], dup, f"must be unique ({what} repeats an earlier row)")

    def reference(self, table: RawTable, column: str, target: RawTable, what: str) -> np.ndarray:
        if not self.usable(target, "id"):  # its header is broken: every reference would miss
            return np.zeros(len(table), dtype=bool)
        hit = positions(table.frame[column], target.frame["id"].dropna()) >= 0
        self.rule(table, column, ~hit, f"must name a known {what}")
        return hit & table.given(column)


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"must be in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"must be {'>' if low_open else '>='} {low:g}"
    return f"must be {'<' if high_open else '<='} {high:g}"


def validate(raw: RawInstance) -> Instance:
    """Check every rule; raise InputError listing all issues, else build the Instance."""
    if set(raw.tables) != set(TABLE_COLUMNS):
        raise InputError(raw.issues)
    check = _Checker(raw)
    t = raw.tables
    items, bundles, bitems, perks, segs, resp = (
        t["items"], t["bundles"], t["bundle_items"], t["perks"], t["segments"], t["responses"])

    for table in (items, bundles, segs):
        check.unique(table, ["id"], "id")
    check.number(items, "price", low=0, low_open=True)
    check.number(items, "cost", low=0)
    check.number(items, "stock", low=0)
    for column in ("price", "cost"):
        check.bounded(items, column, MAX_MONEY, MONEY_RULE)
    check.bounded(items, "stock", MAX_COUNT, COUNT_RULE)

    kinds = bundles.frame["kind"]
    check.rule(bundles, "kind", ~kinds.isin(BUNDLE_KINDS).to_numpy(),
               "must be one of " + ", ".join(BUNDLE_KINDS))
    check.number(bundles, "min_margin_rate", low=0, high=1)
    _check_ladders(check, bundles, "discounts")

    item_ok = check.reference(bitems, "item", items, "item")
    bundle_ok = check.reference(bitems, "bundle", bundles, "bundle")
    check.number(bitems, "qty", low=1)
    check.bounded(bitems, "qty", MAX_COUNT, COUNT_RULE)
    check.unique(bitems, ["bundle", "item"], "the item")
    has_items = bundles.frame["id"].isin(bitems.frame["bundle"]).to_numpy()
    if check.usable(bitems, "bundle"):
        check.rows(bundles, "items", ~has_items & bundles.given("id"),
                   "must list at least one item", shown=np.full(len(bundles), None),
                   has_value=False)
    _check_bundle_prices(check, items, bundles, bitems, item_ok & bundle_ok)

    check.reference(perks, "bundle", bundles, "bundle")
    check.unique(perks, ["bundle", "id"], "the perk id within its bundle")
    check.number(perks, "cost", low=0)
    check.number(perks, "lift")
    check.bounded(perks, "cost", MAX_MONEY, MONEY_RULE)
    check.bounded(perks, "lift", MAX_LOGIT, LOGIT_RULE, symmetric=True)

    check.number(segs, "views", low=0)
    for col in ("min_offers", "max_offers"):
        check.number(segs, col, low=0)
    for col in ("views", "min_offers", "max_offers"):
        check.bounded(segs, col, MAX_COUNT, COUNT_RULE)
    lo = segs.frame["min_offers"].to_numpy(dtype=np.float64)
    hi = segs.frame["max_offers"].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        check.rule(segs, "min_offers", lo > hi, "must be <= max_offers")
    _check_contacts(check, segs, t["audiences"], t["channels"])

    check.reference(resp, "segment", segs, "segment")
    check.reference(resp, "bundle", bundles, "bundle")
    check.unique(resp, ["segment", "bundle"], "the (segment, bundle) pair")
    check.number(resp, "take_rate", low=0, high=1, low_open=True, high_open=True)
    check.number(resp, "baseline_rate", low=0, high=1, high_open=True)
    check.number(resp, "price_sensitivity", low=0)
    check.bounded(resp, "price_sensitivity", MAX_LOGIT,
                  "must be <= 100 (the bound on logit-scale numbers)")

    policy = _check_policy(raw)
    if raw.issues:
        raise InputError(raw.issues)
    return _build(raw, policy)


def _check_contacts(check: _Checker, segs: RawTable, audiences: RawTable,
                    channels: RawTable) -> None:
    """Spec section 8: audiences and channels, and the segments' references to them.
    `timing` is a free label: being a string is its only rule."""
    for table in (audiences, channels):
        check.unique(table, ["id"], "id")
    check.number(audiences, "customers", low=0, low_open=True)
    check.number(audiences, "max_offers_per_customer", low=0)
    check.number(audiences, "max_repeats", low=1)  # an integer: checked when read
    for column in ("customers", "max_offers_per_customer", "max_repeats"):
        check.bounded(audiences, column, MAX_COUNT, COUNT_RULE)
    check.number(channels, "capacity", low=0)
    check.bounded(channels, "capacity", MAX_COUNT, COUNT_RULE)
    check.number(channels, "cost_per_impression", low=0)
    check.bounded(channels, "cost_per_impression", MAX_MONEY, MONEY_RULE)
    # null or empty means none (its own audience, no channel); a given name must resolve
    check.reference(segs, "audience", audiences, "audience")
    check.reference(segs, "channel", channels, "channel")


def _check_ladders(check: _Checker, table: RawTable, column: str) -> None:
    for i, ladder in enumerate(table.frame[column]):
        if ladder is None:
            continue
        problem = _ladder_problem(ladder)
        if problem:
            check.issues.append(Issue(table.locator.path(i, column), problem, list(ladder)))


def _ladder_problem(ladder: tuple[float, ...]) -> str | None:
    if not all(np.isfinite(d) and 0 <= d < 1 for d in ladder):
        return "must hold discounts in [0, 1)"
    if len(set(ladder)) != len(ladder):
        return "must not repeat a discount"
    return None


def _check_bundle_prices(check: _Checker, items: RawTable, bundles: RawTable,
                         bitems: RawTable, line_ok: np.ndarray) -> None:
    price_by_item = pd.Series(items.frame["price"].to_numpy(), index=items.frame["id"])
    price_by_item = price_by_item[~price_by_item.index.duplicated()]
    lines = bitems.frame.loc[line_ok & bitems.given("qty")]
    with np.errstate(over="ignore", invalid="ignore"):  # out-of-bound prices are reported
        line_price = price_by_item.reindex(lines["item"]).to_numpy() * lines["qty"].to_numpy()
        reference = pd.Series(line_price).groupby(lines["bundle"].to_numpy()).sum()
    ref = reference.reindex(bundles.frame["id"]).to_numpy(dtype=np.float64)
    price = bundles.frame["price"].to_numpy(dtype=np.float64)
    check.number(bundles, "price", low=0, low_open=True)
    check.bounded(bundles, "price", MAX_MONEY, MONEY_RULE)
    if not (check.usable(items, "price") and check.usable(bitems, "qty")):
        return  # no reference price can be computed: the header problem is the issue
    with np.errstate(invalid="ignore"):
        above = price > ref * (1 + 1e-12)
    check.rule(bundles, "price", above & np.isfinite(ref),
               "must be <= the reference price (the sum of its items' prices)")


def _check_policy(raw: RawInstance) -> Policy:
    """Policy values arrive coerced (ladder: tuple, int/number: float, bool: bool)."""
    given: dict[str, Any] = dict(raw.policy)
    issues = raw.issues

    def bad(name: str, rule: str) -> None:
        issues.append(Issue(f"policy.{name}", rule, given.pop(name)))

    if "discount_ladder" in given:
        problem = _ladder_problem(given["discount_ladder"])
        if problem:
            issues.append(Issue("policy.discount_ladder", problem, list(given.pop("discount_ladder"))))
    fractions = ("min_margin_rate", "max_discount", "max_discounted_share", "max_avg_discount",
                 "min_aggregate_margin_rate", "holdout_fraction")
    for name in fractions:
        if name in given and not 0 <= given[name] <= 1:
            bad(name, "must be a fraction in [0, 1]")
    budget = given.get("promotion_budget")
    if budget is not None and not (np.isfinite(budget) and budget >= 0):
        bad("promotion_budget", "must be a finite number >= 0")
    elif budget is not None and budget > MAX_MONEY:
        bad("promotion_budget", MONEY_RULE)
    for name in ("min_offers_per_view", "max_offers_per_view"):
        if not np.isfinite(given.get(name, 1)):
            bad(name, "must be a finite number")
        elif given.get(name, 1) > MAX_COUNT:
            bad(name, COUNT_RULE)
    if given.get("min_offers_per_view", 0) < 0:
        bad("min_offers_per_view", "must be >= 0")
    if given.get("max_offers_per_view", 1) < 1:
        bad("max_offers_per_view", "must be >= 1")
    for name in ("min_offers_per_view", "max_offers_per_view"):
        if name in given:
            given[name] = int(given[name])
    policy = Policy(**given)
    if policy.min_offers_per_view > policy.max_offers_per_view:
        issues.append(Issue("policy.min_offers_per_view",
                            f"must be <= max_offers_per_view ({policy.max_offers_per_view})",
                            policy.min_offers_per_view))
    return policy


def _build(raw: RawInstance, policy: Policy) -> Instance:
    t = {name: table.frame for name, table in raw.tables.items()}
    warnings = list(raw.warnings)
    items = t["items"]
    loss = items["cost"].to_numpy() > items["price"].to_numpy()
    for i in np.flatnonzero(loss)[:MAX_PER_RULE]:
        warnings.append(f"{raw.tables['items'].locator.path(int(i), 'cost')}: "
                        f"above the item's price (a loss leader)")
    segments = t["segments"].assign(
        min_offers=pd.array(t["segments"]["min_offers"], dtype="Int64"),
        max_offers=pd.array(t["segments"]["max_offers"], dtype="Int64"),
    )
    responses = t["responses"].assign(
        baseline_rate=t["responses"]["baseline_rate"].fillna(0.0),
        price_sensitivity=t["responses"]["price_sensitivity"].fillna(0.0),
    )
    bundle_items = t["bundle_items"].assign(qty=t["bundle_items"]["qty"].astype(np.int64))
    # Spec section 8: names as plain str or None (the model's dtypes); numbers float64 with
    # NaN for none, max_repeats too (its integers were checked when read).
    segments = segments.assign(**{c: _names(segments[c]) for c in OPTIONAL_SEGMENT_COLUMNS})
    audiences = t["audiences"].assign(id=_names(t["audiences"]["id"]))
    channels = t["channels"].assign(
        id=_names(t["channels"]["id"]),
        cost_per_impression=t["channels"]["cost_per_impression"].fillna(0.0),
    )
    return Instance(
        name=raw.name, currency=raw.currency, items=items, bundles=t["bundles"],
        bundle_items=bundle_items, perks=t["perks"], segments=segments, responses=responses,
        policy=policy, warnings=tuple(warnings),
        audiences=audiences.loc[:, list(TABLE_COLUMNS["audiences"])].astype(
            {c: np.float64 for c in TABLE_COLUMNS["audiences"][1:]}),
        channels=channels.loc[:, list(TABLE_COLUMNS["channels"])].astype(
            {c: np.float64 for c in TABLE_COLUMNS["channels"][1:]}),
    )


def _names(column: pd.Series) -> pd.Series:
    """A text column as an object column of str, None where not given."""
    return pd.Series(column.to_numpy(dtype=object, na_value=None), index=column.index,
                     dtype=object)
