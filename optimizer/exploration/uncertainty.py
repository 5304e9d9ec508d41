"""How uncertain each response is: the spread of a posterior draw of a cell's take logit and
price sensitivity.

The table is the one `offeropt estimate -o` writes (docs/formats.md, "What `estimate`
writes"): `segment`, `bundle`, `take_rate`, `take_rate_se` (on the rate's scale, by the delta
method: `take_rate * (1 - take_rate) * se of the logit`) and `price_sensitivity_se`; other
columns are ignored. A cell the table does not give (no row, or an empty `_se`, as for a
response estimation kept from the instance) gets the prior spread below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from optimizer.errors import InputError, Issue
from optimizer.io.fields import Locator
from optimizer.io.tables import read_table_file

# The prior spread of a cell no estimate measures, one standard deviation: its take rate's
# odds within a factor of e^0.5 (about 1.65), its price sensitivity within 3 (sensitivities
# run from about 1 to 20: 3 moves the response to a 10% discount by 0.3 on the logit).
PRIOR_TAKE_LOGIT_SE = 0.5
PRIOR_SENSITIVITY_SE = 3.0
# A small take_rate_se near a rate of 0 or 1 is a large logit spread; beyond this a draw
# says nothing a smaller one would not.
MAX_LOGIT_SE = 5.0
KEY = ("segment", "bundle")
SE_COLUMNS = ("take_rate_se", "price_sensitivity_se")
Rule = tuple[str, Callable[[np.ndarray], np.ndarray]]


def load_uncertainty(path: str | Path) -> pd.DataFrame:
    """The uncertainty table of a CSV or Parquet file, typed (`uncertainty_table`)."""
    frame, locator = read_table_file(path)
    return uncertainty_table(frame, locator, Path(path).name)


def uncertainty_table(frame: pd.DataFrame, locator: Locator | None = None,
                      name: str = "uncertainty") -> pd.DataFrame:
    """`segment`, `bundle` (text) and `take_rate`, `take_rate_se`, `price_sensitivity_se`
    (numbers, NaN where empty or not given). `InputError` names every cell that breaks a rule."""
    locator = locator or Locator(name, "json")
    missing = [c for c in KEY if c not in frame.columns]
    if not any(c in frame.columns for c in SE_COLUMNS):
        missing.append(" or ".join(repr(c) for c in SE_COLUMNS))
    if missing:
        raise InputError([Issue(name, f"must have a column {c if ' or ' in c else repr(c)} "
                                      "(as `offeropt estimate -o` writes it)", has_value=False)
                          for c in missing])
    issues: list[Issue] = []
    out = pd.DataFrame({c: _ids(frame[c], c, locator, issues) for c in KEY})
    rules: dict[str, Rule] = {
        "take_rate": ("must be a number in (0, 1) or empty", lambda v: (v > 0) & (v < 1)),
        **dict.fromkeys(SE_COLUMNS, ("must be a finite number >= 0 or empty",
                                     lambda v: np.isfinite(v) & (v >= 0)))}
    for column, (rule, valid) in rules.items():
        out[column] = _numbers(frame, column, rule, valid, locator, issues)
    again = np.flatnonzero(out.duplicated(list(KEY)).to_numpy() & (out["segment"] != "").to_numpy())
    issues += [Issue(locator.path(int(i)), "must be the only row of its (segment, bundle)",
                     (out["segment"].iloc[i], out["bundle"].iloc[i])) for i in again]
    if issues:
        raise InputError(issues)
    return out


def _ids(column: pd.Series, name: str, locator: Locator, issues: list[Issue]) -> pd.Series:
    text = column.astype("string").str.strip().fillna("")
    issues += [Issue(locator.path(int(i), name), "is required", has_value=False)
               for i in np.flatnonzero((text == "").to_numpy())]
    return text.astype(object)


def _numbers(frame: pd.DataFrame, column: str, rule: str,
             valid: Callable[[np.ndarray], np.ndarray], locator: Locator,
             issues: list[Issue]) -> np.ndarray:
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        empty = np.isnan(values)
    else:
        text = raw.astype("string").str.strip()
        empty = (text.isna() | (text == "")).to_numpy()
        values = pd.to_numeric(text.mask(empty, None), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        ok = empty | (~np.isnan(values) & valid(values))
    issues += [Issue(locator.path(int(i), column), rule, raw.iloc[i]) for i in np.flatnonzero(~ok)]
    return np.where(empty | ~ok, np.nan, values)


@dataclass(frozen=True)
class Spread:
    """Per cell: one standard deviation of its take logit and of its price sensitivity."""

    logit_se: np.ndarray
    sensitivity_se: np.ndarray
    from_prior: np.ndarray  # bool: some of the cell's spread is the prior's

    def __len__(self) -> int:
        return len(self.logit_se)


def cell_spread(segment: np.ndarray, bundle: np.ndarray, take_rate: np.ndarray,
                table: pd.DataFrame | None) -> Spread:
    """The spread of cells given by segment and bundle ids (object arrays) and their take
    rates, from a typed uncertainty table (`uncertainty_table`) or the prior."""
    n = len(segment)
    if table is None or not len(table) or not n:
        return Spread(np.full(n, PRIOR_TAKE_LOGIT_SE), np.full(n, PRIOR_SENSITIVITY_SE),
                      np.ones(n, dtype=bool))
    row = pd.MultiIndex.from_frame(table[list(KEY)]).get_indexer(
        pd.MultiIndex.from_arrays([segment, bundle]))
    found = row >= 0

    def column(name: str) -> np.ndarray:
        out = np.full(n, np.nan)
        out[found] = table[name].to_numpy(dtype=np.float64)[row[found]]
        return out

    # the table's own rate undoes its delta method; the instance's where it gives none
    rate = np.where(np.isnan(column("take_rate")), take_rate, column("take_rate"))
    logit_se = np.minimum(column("take_rate_se") / (rate * (1.0 - rate)), MAX_LOGIT_SE)
    sensitivity_se = column("price_sensitivity_se")
    from_prior = np.isnan(logit_se) | np.isnan(sensitivity_se)
    return Spread(np.where(np.isnan(logit_se), PRIOR_TAKE_LOGIT_SE, logit_se),
                  np.where(np.isnan(sensitivity_se), PRIOR_SENSITIVITY_SE, sensitivity_se),
                  from_prior)
