"""Experiment logs, `offeropt/exposures@1` (spec section 6): read, validate, aggregate.

Both forms are accepted: aggregated (`views`, `purchases` per arm) and row-level
(`purchased` in {0, 1} per view). Every row is checked against the instance it
estimates for, over whole columns; each broken rule is an issue naming the file's
row and column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyarrow.lib import ArrowException

from optimizer.errors import InputError, Issue
from optimizer.io.fields import Locator
from optimizer.io.lookup import positions
from optimizer.io.tables import read_table_file
from optimizer.io.validate import COUNT_RULE, MAX_COUNT
from optimizer.model.instance import Instance

KEY_COLUMNS = ("segment", "bundle", "shown", "discount")
AGGREGATED = ("views", "purchases")
ROW_LEVEL = ("purchased",)
ARM = ("segment", "bundle", "shown", "discount", "perk")
_DISCOUNT_KEY = 1e9  # discounts are compared as integers of 1e-9, as written in files
ARROW_TEXT = pd.StringDtype("pyarrow")


@dataclass(frozen=True)
class Exposures:
    """Aggregated arms as arrays of positions into the instance's tables."""

    segment: np.ndarray  # int64 position in instance.segments
    bundle: np.ndarray  # int64 position in instance.bundles
    shown: np.ndarray  # bool; False = holdout
    discount: np.ndarray  # float64
    perk: np.ndarray  # int64 position in instance.perks, -1 = no perk
    views: np.ndarray  # int64
    purchases: np.ndarray  # int64
    row_level: bool = False
    name: str = "exposures"  # the log's file name, for messages

    def __len__(self) -> int:
        return len(self.views)


def load_exposures(path: str | Path, instance: Instance) -> Exposures:
    frame, locator = read_table_file(path, arrow_text=True)
    return exposures_from_frame(frame, instance, locator, Path(path).name)


def exposures_from_frame(frame: pd.DataFrame, instance: Instance, locator: Locator,
                         name: str = "exposures") -> Exposures:
    issues: list[Issue] = []
    rows, row_level = check_rows(frame, instance, locator, name, issues)
    if issues:
        raise InputError(issues)
    arms = rows.groupby(list(ARM), as_index=False, sort=True)[["views", "purchases"]].sum()
    return Exposures(
        segment=arms["segment"].to_numpy(np.int64), bundle=arms["bundle"].to_numpy(np.int64),
        shown=arms["shown"].to_numpy(bool), discount=arms["discount"].to_numpy(np.float64),
        perk=arms["perk"].to_numpy(np.int64), views=arms["views"].to_numpy(np.int64),
        purchases=arms["purchases"].to_numpy(np.int64), row_level=row_level, name=name,
    )


def check_rows(frame: pd.DataFrame, instance: Instance, locator: Locator, name: str,
               issues: list[Issue]) -> tuple[pd.DataFrame, bool]:
    """Every row of a log checked, before its arms are summed: one row per row of `frame`
    (`segment`, `bundle` and `perk` as positions in the instance, -1 where unknown or none;
    `shown`, `discount`, `views`, `purchases`), and whether the log is row-level. Broken
    rules are added to `issues`; a missing column raises at once."""
    row_level = "purchased" in frame.columns and "views" not in frame.columns
    counts = ROW_LEVEL if row_level else AGGREGATED
    missing = [c for c in (*KEY_COLUMNS, *counts) if c not in frame.columns]
    if missing:
        raise InputError([Issue(name, f"must have a column {c!r} (offeropt/exposures@1)",
                                has_value=False) for c in missing])
    check = Checker(frame, locator, issues)
    segment = check.ids("segment", pd.Index(instance.segments["id"]), "a segment id of the instance")
    bundle = check.ids("bundle", pd.Index(instance.bundles["id"]), "a bundle id of the instance")
    shown_num = check.numbers("shown", "must be 0 or 1", lambda v: np.isin(v, (0.0, 1.0)))
    discount = check.numbers("discount", "must be a number in [0, 1)", lambda v: (v >= 0) & (v < 1))
    if row_level:
        purchased = check.numbers("purchased", "must be 0 or 1", lambda v: np.isin(v, (0.0, 1.0)))
        views = np.ones(len(frame))
        purchases = purchased
    else:
        rule = "must be an integer >= 0"
        views = check.counts("views", rule)
        purchases = check.counts("purchases", rule)
        over = np.flatnonzero(purchases > views)
        issues.extend(Issue(locator.path(int(i), "purchases"), f"must be <= views ({views[i]:g})",
                            purchases[i]) for i in over)
    shown = shown_num == 1.0
    perk = _perks(frame, instance, locator, bundle, shown, shown_num, issues)
    _check_discounts(instance, locator, bundle, shown, shown_num, discount, issues)
    rows = pd.DataFrame({"segment": segment, "bundle": bundle, "shown": shown,
                         "discount": discount, "perk": perk, "views": views, "purchases": purchases})
    if not row_level:
        _check_arm_totals(rows, locator, issues)
    return rows, row_level


class Checker:
    """Column parsers that record one issue per unreadable or rule-breaking cell."""

    def __init__(self, frame: pd.DataFrame, locator: Locator, issues: list[Issue]) -> None:
        self.frame, self.locator, self.issues = frame, locator, issues

    def text(self, column: str) -> pd.Series:
        raw = self.frame[column]
        try:  # in Arrow: no Python object per cell, at tens of millions of rows
            text = raw.astype(ARROW_TEXT).str.strip()
        except (TypeError, ValueError, UnicodeError, ArrowException):  # a Parquet binary column
            raise InputError([Issue(f"{self.locator.table}.parquet",
                                    f"must have a column {column!r} of text",
                                    value_text=f"a column of {raw.dtype}")]) from None
        return text.mask(raw.isna(), "")

    def ids(self, column: str, known: pd.Index, what: str) -> np.ndarray:
        text = self.text(column)
        pos = positions(text, known)
        for i in np.flatnonzero(pos < 0):
            value = text.iloc[i]
            if value == "":
                self.issues.append(Issue(self.locator.path(int(i), column), "is required",
                                         has_value=False))
            else:
                self.issues.append(Issue(self.locator.path(int(i), column), f"must be {what}", value))
        return pos

    def counts(self, column: str, rule: str) -> np.ndarray:
        """Whole counts in [0, MAX_COUNT]: a count beyond it is refused, never wrapped around
        when the arms are summed in 64-bit integers."""
        values = self.numbers(column, rule, lambda v: (v >= 0) & (np.floor(v) == v),
                              beyond=(MAX_COUNT, COUNT_RULE))
        return values

    def numbers(self, column: str, rule: str, valid: Callable[[np.ndarray], np.ndarray],
                beyond: tuple[float, str] | None = None) -> np.ndarray:
        raw = self.frame[column]
        values = numeric(raw)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(values) & valid(values)
            too_big = ok & (values > beyond[0]) if beyond else np.zeros(len(values), bool)
        for i in np.flatnonzero(~ok):
            self.issues.append(Issue(self.locator.path(int(i), column), rule, _cell(raw.iloc[i])))
        if beyond:
            for i in np.flatnonzero(too_big):
                self.issues.append(Issue(self.locator.path(int(i), column), beyond[1],
                                         float(values[i])))
        return np.where(ok & ~too_big, values, 0.0)


def _check_arm_totals(rows: pd.DataFrame, locator: Locator, issues: list[Issue]) -> None:
    """An arm's rows are summed: its total views, too, must stay within MAX_COUNT."""
    total = rows.groupby(list(ARM), sort=False)["views"].transform("sum").to_numpy()
    first = ~rows.duplicated(subset=list(ARM)).to_numpy()
    for i in np.flatnonzero((total > MAX_COUNT) & first):
        issues.append(Issue(locator.path(int(i), "views"),
                            "must sum to <= 1e15 over the rows of its arm (segment, bundle, "
                            "shown, discount, perk)", float(total[i])))


def numeric(raw: pd.Series) -> np.ndarray:
    """A column as float64 numbers, NaN where a cell is not one (text, a list, a date)."""
    if pd.api.types.is_bool_dtype(raw):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_numeric_dtype(raw):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        text = raw.astype(pd.StringDtype("pyarrow"))
    except (TypeError, ValueError, ArrowException):
        return np.full(len(raw), np.nan)
    return pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _cell(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _perks(frame: pd.DataFrame, instance: Instance, locator: Locator, bundle: np.ndarray,
           shown: np.ndarray, shown_num: np.ndarray, issues: list[Issue]) -> np.ndarray:
    if "perk" not in frame.columns:
        return np.full(len(frame), -1, dtype=np.int64)
    perk_id = Checker(frame, locator, issues).text("perk")
    given = (perk_id != "").to_numpy(dtype=bool, na_value=False)
    bundle_ids = instance.bundles["id"].to_numpy(dtype=object)
    # (bundle, perk) pairs as one integer each: the bundle's position and the perk id's code
    code, names = pd.factorize(perk_id)
    width = len(names) + 1
    perk_code = positions(instance.perks["id"], names)
    named = np.flatnonzero(perk_code >= 0)  # the instance's perks whose ids the log names
    known = positions(instance.perks["bundle"], instance.bundles["id"])[named] * width + \
        perk_code[named]
    found = pd.Index(known).get_indexer(bundle * width + code)
    pos = np.full(len(bundle), -1, dtype=np.int64)
    hit = given & (bundle >= 0) & (code >= 0) & (found >= 0)
    pos[hit] = named[found[hit]]
    holdout = shown_num == 0.0
    for i in np.flatnonzero(given & holdout):
        issues.append(Issue(locator.path(int(i), "perk"), "must be empty for a holdout row (shown = 0)",
                            perk_id.iloc[i]))
    for i in np.flatnonzero(given & shown & (bundle >= 0) & (pos < 0)):
        issues.append(Issue(locator.path(int(i), "perk"),
                            f"must be a perk of bundle {bundle_ids[bundle[i]]!r}", perk_id.iloc[i]))
    return np.where(shown, pos, -1).astype(np.int64)


def _check_discounts(instance: Instance, locator: Locator, bundle: np.ndarray, shown: np.ndarray,
                     shown_num: np.ndarray, discount: np.ndarray, issues: list[Issue]) -> None:
    ladders = instance.bundle_ladders()
    # (bundle, discount) pairs as one integer each: discounts in [0, 1) take 30 bits
    allowed = {b << 32 | round(d * _DISCOUNT_KEY) for b, ladder in enumerate(ladders)
               for d in ladder}
    keys = bundle << 32 | np.round(np.clip(discount, 0, 1) * _DISCOUNT_KEY).astype(np.int64)
    in_ladder = pd.Index(sorted(allowed), dtype=np.int64).get_indexer(keys) >= 0
    bundle_ids = instance.bundles["id"].to_numpy(dtype=object)
    for i in np.flatnonzero(shown & (bundle >= 0) & ~in_ladder & (discount >= 0) & (discount < 1)):
        ladder = [float(d) for d in ladders[bundle[i]]]
        issues.append(Issue(locator.path(int(i), "discount"),
                            f"must be in bundle {bundle_ids[bundle[i]]!r}'s ladder {ladder}",
                            float(discount[i])))
    for i in np.flatnonzero((shown_num == 0.0) & (discount != 0)):
        issues.append(Issue(locator.path(int(i), "discount"), "must be 0 for a holdout row (shown = 0)",
                            float(discount[i])))
