"""Served-policy logs (spec section 9): exposures@1 rows with `plan_version`, `set` and
`propensity`, checked and summed into cells.

Every rule of `offeropt/exposures@1` is checked as `offeropt estimate` checks it
(`optimizer.estimation.exposures.check_rows`); the three extra columns add theirs, and every
broken rule of either is reported at once, naming the row and the column:
`logs.csv[line 4].propensity: must be in (0, 1], got 0`.

A row with `shown = 1` belongs to the offer set named in `set`; a row with `shown = 0` is a
holdout row, whose `set` is empty. Each (segment, plan_version, set) has one propensity, and a
segment's sets and holdout, in one plan version, are disjoint events: their propensities sum to
at most 1 (what they leave is the views served an empty set, which no row records).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.estimation.exposures import Checker, check_rows, numeric
from optimizer.io.fields import Locator
from optimizer.model.instance import Instance

EXTRA_COLUMNS = ("plan_version", "set", "propensity")
CELL = ("segment", "bundle", "shown", "discount", "perk", "version", "set")
SERVED = ("segment", "version", "shown", "set")  # one offer set served, or the holdout
NO_VERSION = -1
SUM_SLACK = 1e-6  # propensities of a segment may sum to 1 + this (rounding in the writer)
SAME_SLACK = 1e-9


@dataclass(frozen=True)
class ServedLogs:
    """Log cells, one per (segment, bundle, shown, discount, perk, version, set), positions into
    the instance's tables (`perk` -1 for none); `version` NO_VERSION without the column,
    `propensity` NaN without it, `set` "" for holdout rows (and for every row without the
    column: then a segment's shown rows are taken as one set)."""

    cells: pd.DataFrame
    name: str
    has_sets: bool
    has_propensity: bool
    has_versions: bool

    def versions(self) -> list[int]:
        return sorted(int(v) for v in self.cells["version"].unique() if v != NO_VERSION)

    def of_version(self, version: int) -> ServedLogs:
        keep = (self.cells["version"] == version).to_numpy()
        return ServedLogs(self.cells[keep].reset_index(drop=True), self.name, self.has_sets,
                          self.has_propensity, self.has_versions)


def read_served(frame: pd.DataFrame, instance: Instance, locator: Locator | None = None,
                name: str = "logs", require: tuple[str, ...] = ()) -> ServedLogs:
    """The log checked against `instance` and summed into cells. `require` names extra
    columns the caller cannot do without (off-policy estimates need `set` and `propensity`)."""
    locator = locator or Locator(name, "json")
    missing = [c for c in require if c not in frame.columns]
    if missing:
        raise InputError([Issue(name, f"must have a column {c!r} (spec section 9: the served "
                                "policy) for off-policy estimates", has_value=False)
                          for c in missing])
    issues: list[Issue] = []
    rows, _ = check_rows(frame, instance, locator, name, issues)
    n = len(rows)
    shown = rows["shown"].to_numpy(bool)
    version = _versions(frame, locator, issues) if "plan_version" in frame.columns else \
        np.full(n, NO_VERSION, dtype=np.int64)
    sets = _sets(frame, locator, shown, issues) if "set" in frame.columns else \
        np.full(n, "", dtype=object)
    rows = rows.assign(version=version, set=sets)
    if "propensity" in frame.columns:
        rows["propensity"] = _propensities(frame, locator, rows, issues)
    else:
        rows["propensity"] = np.nan
    if issues:
        raise InputError(issues)
    cells = rows.groupby(list(CELL), as_index=False, sort=True).agg(
        views=("views", "sum"), purchases=("purchases", "sum"), propensity=("propensity", "first"))
    return ServedLogs(cells, name, "set" in frame.columns, "propensity" in frame.columns,
                      "plan_version" in frame.columns)


def _versions(frame: pd.DataFrame, locator: Locator, issues: list[Issue]) -> np.ndarray:
    values = Checker(frame, locator, issues).numbers(
        "plan_version", "must be an integer >= 1 (a published plan version)",
        lambda v: (v >= 1) & (np.floor(v) == v) & (v < 2**53))
    return values.astype(np.int64)


def _sets(frame: pd.DataFrame, locator: Locator, shown: np.ndarray,
          issues: list[Issue]) -> np.ndarray:
    text = Checker(frame, locator, issues).text("set").to_numpy(dtype=object, na_value="")
    named = text != ""
    issues += [Issue(locator.path(int(i), "set"), "must name the offer set served on a shown "
                     "row (shown = 1)", has_value=False) for i in np.flatnonzero(shown & ~named)]
    issues += [Issue(locator.path(int(i), "set"), "must be empty on a holdout row (shown = 0)",
                     text[i]) for i in np.flatnonzero(~shown & named)]
    return text


def _propensities(frame: pd.DataFrame, locator: Locator, rows: pd.DataFrame,
                  issues: list[Issue]) -> np.ndarray:
    """In (0, 1]; one value per served set (and per holdout) of a segment and version; a
    segment's sets and holdout sum to at most 1 per version."""
    raw = frame["propensity"]
    value = numeric(raw)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(value)
        ok = finite & (value > 0) & (value <= 1)
    for i in np.flatnonzero(~ok):  # a number is shown as one, an unreadable cell as written
        cell = float(value[i]) if finite[i] else raw.iloc[i]
        shown_value = cell.item() if isinstance(cell, np.generic) else cell
        issues.append(Issue(locator.path(int(i), "propensity"), "must be in (0, 1]", shown_value))
    value = np.where(ok, value, np.nan)
    keyed = rows.assign(propensity=value)
    if bool(ok.all()) and len(rows):
        _check_consistent(keyed, locator, issues)
    return value


def _check_consistent(rows: pd.DataFrame, locator: Locator, issues: list[Issue]) -> None:
    valid = (rows["segment"] >= 0).to_numpy()
    rows = rows.assign(line=np.arange(len(rows)))[valid]
    grouped = rows.groupby(list(SERVED), sort=False)
    first = grouped["propensity"].transform("first").to_numpy()
    first_line = grouped["line"].transform("first").to_numpy()
    value = rows["propensity"].to_numpy()
    line = rows["line"].to_numpy()
    for k in np.flatnonzero(np.abs(value - first) > SAME_SLACK * np.maximum(1.0, first)):
        issues.append(Issue(locator.path(int(line[k]), "propensity"),
                            f"must equal the propensity of the other rows of its set "
                            f"({first[k]:g} in {locator.row(int(first_line[k]))})", float(value[k])))
    served = rows.drop_duplicates(list(SERVED))
    total = served.groupby(["segment", "version"], sort=False).agg(
        total=("propensity", "sum"), line=("line", "first"))
    for (_, version), row in total[total["total"] > 1 + SUM_SLACK].iterrows():
        when = "" if version == NO_VERSION else f" in plan version {version}"
        issues.append(Issue(locator.path(int(row["line"]), "propensity"),
                            f"must sum to at most 1 over the segment's offer sets and its "
                            f"holdout{when} (they are disjoint)", float(row["total"])))
